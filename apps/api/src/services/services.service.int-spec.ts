import { DataSource } from 'typeorm';
import { AppConfig } from '@edm/config';
import { openSecretOptions } from '@edm/domain';
import { newEvent } from '@edm/events';
import { EventStore, uuidv7 } from '@edm/event-store';
import { createDataSource, runMigrations } from '@edm/persistence';
import { allProjections } from '@edm/read-models';
import { createTestEnvironment, TestEnvironment } from '@edm/testing';
import { Principal } from '../auth/principal';
import { ServicesService } from './services.service';

/** Updating a service's options from what the API showed of them, against real Postgres. */
describe('ServicesService options update (Postgres)', () => {
  let env: TestEnvironment;
  let config: AppConfig;
  let db: DataSource;
  let services: ServicesService;
  const accountId = uuidv7();
  const principal: Principal = { keyId: uuidv7(), accountId, role: 'account' };

  beforeAll(async () => {
    env = await createTestEnvironment('services_service');
    config = env.config();
    db = createDataSource({ url: env.databaseUrl, poolSize: 2, applicationName: 'test' });
    await db.initialize();
    await runMigrations(db);
    const store = new EventStore(db);
    store.register(...allProjections);
    services = new ServicesService(db, store, config);
    await store.appendToStream(
      `account-${accountId}`,
      'any',
      [newEvent('AccountCreated', { accountId, name: 'acct' })],
      { correlationId: 'services-service', causationId: null },
    );
  });

  afterAll(async () => {
    await db.destroy();
    await env.dispose();
  });

  const storedOptions = async (id: string): Promise<Record<string, unknown>> =>
    (await db.query(`SELECT options FROM sending_services WHERE id = $1`, [id]))[0].options;

  const mailgun = () =>
    services.create(principal, {
      name: 'mg',
      provider: 'mailgun',
      from: { email: 'news@example.com' },
      pace: { intervalMs: 0 },
      credentials: { apiKey: 'key-1', domain: 'mg.example.com' },
      options: { webhookSigningKey: 'signing-canary', timeoutMs: 5_000 },
    });

  it('keeps the stored webhook secret when the masked options read back are sent again', async () => {
    const created = await mailgun();
    const sealedBefore = (await storedOptions(created.id)).webhookSigningKey;

    const shown = await services.get(principal, created.id);
    expect(shown.options.webhookSigningKey).toBe('********');
    const updated = await services.update(principal, created.id, {
      options: { ...shown.options, timeoutMs: 8_000 },
    });

    expect(updated.options).toEqual({ webhookSigningKey: '********', timeoutMs: 8_000 });
    const stored = await storedOptions(created.id);
    expect(stored.webhookSigningKey).toBe(sealedBefore);
    expect(openSecretOptions(config.encryptionKey, stored)).toEqual({
      webhookSigningKey: 'signing-canary',
      timeoutMs: 8_000,
    });
  });

  it('seals a new secret given in place of the mask', async () => {
    const created = await mailgun();

    await services.update(principal, created.id, {
      options: { webhookSigningKey: 'rotated-canary', timeoutMs: 5_000 },
    });

    expect(openSecretOptions(config.encryptionKey, await storedOptions(created.id))).toEqual({
      webhookSigningKey: 'rotated-canary',
      timeoutMs: 5_000,
    });
  });

  it('replaces the options as a whole: a secret left out is removed', async () => {
    const created = await mailgun();

    await services.update(principal, created.id, { options: { timeoutMs: 5_000 } });

    expect(await storedOptions(created.id)).toEqual({ timeoutMs: 5_000 });
  });
});
