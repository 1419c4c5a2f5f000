import { Body, Controller, Get, HttpCode, Post, Query } from '@nestjs/common';
import { ZodPipe } from '@edm/platform';
import { CurrentPrincipal, Principal } from '../auth/principal';
import { listContactsQuery, ListContactsQuery, upsertContactsSchema } from './contacts.schemas';
import { ContactsService } from './contacts.service';
import { z } from 'zod';

@Controller('api/v1/contacts')
export class ContactsController {
  constructor(private readonly contacts: ContactsService) {}

  @Post()
  @HttpCode(200)
  upsert(
    @CurrentPrincipal() p: Principal,
    @Body(new ZodPipe(upsertContactsSchema)) body: z.infer<typeof upsertContactsSchema>,
  ) {
    return this.contacts.upsert(p, body.contacts);
  }

  @Post('import')
  @HttpCode(200)
  import(@CurrentPrincipal() p: Principal, @Body() body: unknown) {
    return this.contacts.importCsv(p, body);
  }

  @Get()
  list(@CurrentPrincipal() p: Principal, @Query(new ZodPipe(listContactsQuery)) query: ListContactsQuery) {
    return this.contacts.list(p, query);
  }
}
