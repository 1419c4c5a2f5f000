import { Body, Controller, Get, HttpCode, Param, Patch, Post } from '@nestjs/common';
import { z } from 'zod';
import { ZodPipe } from '@edm/platform';
import { CurrentPrincipal, Principal } from '../auth/principal';
import {
  createServiceSchema,
  CreateServiceInput,
  freezeServiceSchema,
  FreezeServiceInput,
  updateServiceSchema,
  UpdateServiceInput,
} from './services.schemas';
import { ServicesService } from './services.service';

const disableSchema = z.object({ reason: z.string().trim().min(1).max(500).optional() }).strict();

@Controller('api/v1/services')
export class ServicesController {
  constructor(private readonly services: ServicesService) {}

  @Post()
  @HttpCode(201)
  create(@CurrentPrincipal() p: Principal, @Body(new ZodPipe(createServiceSchema)) body: CreateServiceInput) {
    return this.services.create(p, body);
  }

  @Get()
  list(@CurrentPrincipal() p: Principal) {
    return this.services.list(p);
  }

  @Get(':id')
  get(@CurrentPrincipal() p: Principal, @Param('id') id: string) {
    return this.services.get(p, id);
  }

  @Patch(':id')
  update(
    @CurrentPrincipal() p: Principal,
    @Param('id') id: string,
    @Body(new ZodPipe(updateServiceSchema)) body: UpdateServiceInput,
  ) {
    return this.services.update(p, id, body);
  }

  @Post(':id/freeze')
  @HttpCode(200)
  freeze(
    @CurrentPrincipal() p: Principal,
    @Param('id') id: string,
    @Body(new ZodPipe(freezeServiceSchema)) body: FreezeServiceInput,
  ) {
    return this.services.freeze(p, id, body);
  }

  @Post(':id/unfreeze')
  @HttpCode(200)
  unfreeze(@CurrentPrincipal() p: Principal, @Param('id') id: string) {
    return this.services.unfreeze(p, id);
  }

  @Post(':id/disable')
  @HttpCode(200)
  disable(
    @CurrentPrincipal() p: Principal,
    @Param('id') id: string,
    @Body(new ZodPipe(disableSchema)) body: z.infer<typeof disableSchema>,
  ) {
    return this.services.setEnabled(p, id, false, body.reason);
  }

  @Post(':id/enable')
  @HttpCode(200)
  enable(@CurrentPrincipal() p: Principal, @Param('id') id: string) {
    return this.services.setEnabled(p, id, true);
  }
}
