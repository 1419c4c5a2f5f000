import { Body, Controller, Get, HttpCode, Post } from '@nestjs/common';
import { z } from 'zod';
import { DataSource } from 'typeorm';
import { newEvent } from '@edm/events';
import { EventStore, uuidv7 } from '@edm/event-store';
import { ZodPipe } from '@edm/platform';
import { generateApiKey } from '../auth/api-key';
import { requireAdmin } from '../auth/api-key.guard';
import { commandMetadata } from '../auth/command-metadata';
import { CurrentPrincipal, Principal } from '../auth/principal';

export const createAccountSchema = z.object({ name: z.string().trim().min(1).max(200) }).strict();

/** Tenants. Only the admin key creates them; the new account's key is shown once. */
@Controller('api/v1/accounts')
export class AccountsController {
  constructor(
    private readonly dataSource: DataSource,
    private readonly store: EventStore,
  ) {}

  @Post()
  @HttpCode(201)
  async create(
    @CurrentPrincipal() principal: Principal,
    @Body(new ZodPipe(createAccountSchema)) body: z.infer<typeof createAccountSchema>,
  ) {
    requireAdmin(principal);
    const accountId = uuidv7();
    const keyId = uuidv7();
    const key = generateApiKey('account');
    await this.dataSource.transaction((tx) =>
      this.store.append(
        tx,
        [
          {
            streamId: `account-${accountId}`,
            expectedVersion: 'no_stream',
            events: [newEvent('AccountCreated', { accountId, name: body.name })],
          },
          {
            streamId: `api-key-${keyId}`,
            expectedVersion: 'no_stream',
            events: [
              newEvent('ApiKeyIssued', {
                keyId,
                accountId,
                role: 'account',
                keyHash: key.hash,
                prefix: key.prefix,
                label: 'account key',
              }),
            ],
          },
        ],
        commandMetadata(principal),
      ),
    );
    return { id: accountId, name: body.name, apiKey: key.key };
  }

  @Get()
  async list(@CurrentPrincipal() principal: Principal) {
    requireAdmin(principal);
    const items = await this.dataSource.query(
      `SELECT id, name, created_at AS "createdAt" FROM accounts ORDER BY created_at`,
    );
    return { items };
  }
}
