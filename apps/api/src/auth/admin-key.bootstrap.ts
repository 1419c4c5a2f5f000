import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { APP_CONFIG, AppConfig } from '@edm/config';
import { newEvent } from '@edm/events';
import { EventStore, uuidv7 } from '@edm/event-store';
import { JsonLogger } from '@edm/observability';
import { generateApiKey, hashApiKey } from './api-key';

const BOOTSTRAP_LOCK = 7_414_003;
export const DEFAULT_ACCOUNT_NAME = 'default';

/**
 * First start: creates the default account and its admin key. With EDM_ADMIN_KEY set, that key
 * is registered; otherwise one is generated and written to EDM_HOME/admin-key (mode
 * 0600) for the CLI, and nowhere else. Several replicas starting together create exactly one.
 */
@Injectable()
export class AdminKeyBootstrap implements OnApplicationBootstrap {
  constructor(
    private readonly dataSource: DataSource,
    private readonly store: EventStore,
    private readonly logger: JsonLogger,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.dataSource.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [BOOTSTRAP_LOCK]);
      const configured = this.config.EDM_ADMIN_KEY;
      const [existing] = await tx.query(
        `SELECT id, key_hash FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL LIMIT 1`,
      );
      if (
        existing &&
        (!configured ||
          (await tx.query(`SELECT 1 FROM api_keys WHERE key_hash = $1`, [hashApiKey(configured)])).length)
      ) {
        return;
      }
      let [account] = await tx.query(`SELECT id FROM accounts WHERE name = $1 ORDER BY created_at LIMIT 1`, [
        DEFAULT_ACCOUNT_NAME,
      ]);
      const meta = { correlationId: uuidv7(), causationId: null, actor: 'api:bootstrap' };
      if (!account) {
        account = { id: uuidv7() };
        await this.store.append(
          tx,
          [
            {
              streamId: `account-${account.id}`,
              expectedVersion: 'no_stream',
              events: [newEvent('AccountCreated', { accountId: account.id, name: DEFAULT_ACCOUNT_NAME })],
            },
          ],
          meta,
        );
      }
      const generated = configured ? undefined : generateApiKey('admin');
      const hash = configured ? hashApiKey(configured) : generated!.hash;
      const keyId = uuidv7();
      await this.store.append(
        tx,
        [
          {
            streamId: `api-key-${keyId}`,
            expectedVersion: 'no_stream',
            events: [
              newEvent('ApiKeyIssued', {
                keyId,
                accountId: account.id,
                role: 'admin',
                keyHash: hash,
                prefix: (configured ?? generated!.key).slice(0, 12),
                label: 'bootstrap admin',
              }),
            ],
          },
        ],
        meta,
      );
      if (generated) {
        const file = join(this.config.home, 'admin-key');
        mkdirSync(this.config.home, { recursive: true, mode: 0o700 });
        writeFileSync(file, generated.key + '\n', { mode: 0o600 });
        chmodSync(file, 0o600);
        // The file is the only place the key is written: a service's output ends up in log collectors.
        this.logger.event('info', 'admin key created', { file });
      }
    });
  }
}
