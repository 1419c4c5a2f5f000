import { DataSource } from 'typeorm';
import { EventStore, uuidv7 } from '@edm/event-store';
import { createDataSource, runMigrations } from '@edm/persistence';
import { allProjections } from '@edm/read-models';
import { createTestEnvironment, TestEnvironment } from '@edm/testing';
import { leaseSubTasks } from './lease-sub-tasks';

/** Leasing against contacts suppressed after their sub-tasks were materialised. */
describe('leaseSubTasks (Postgres)', () => {
  let env: TestEnvironment;
  let db: DataSource;
  let store: EventStore;
  const meta = () => ({ correlationId: uuidv7(), causationId: null });

  /** An account with one unpaced sandbox service, an active and a bounced contact, and a sending task. */
  const given = async () => {
    const account = uuidv7();
    const service = uuidv7();
    const task = uuidv7();
    const active = uuidv7();
    const bounced = uuidv7();
    await db.query(`INSERT INTO accounts VALUES ($1, 'acct', now())`, [account]);
    await db.query(
      `INSERT INTO sending_services (id, account_id, name, provider, from_email, pace, created_at, updated_at)
       VALUES ($1, $2, 's', 'sandbox', 'a@example.com', '{"intervalMs":0}', now(), now())`,
      [service, account],
    );
    await db.query(`INSERT INTO service_runtime (service_id) VALUES ($1)`, [service]);
    await db.query(
      `INSERT INTO contacts (id, account_id, email, status, created_at, updated_at)
       VALUES ($1, $3, 'active@example.com', 'active', now(), now()), ($2, $3, 'bounced@example.com', 'bounced', now(), now())`,
      [active, bounced, account],
    );
    await db.query(
      `INSERT INTO tasks (id, account_id, name, subject, status, total, created_at, updated_at)
       VALUES ($1, $2, 't', 's', 'sending', 0, now(), now())`,
      [task, account],
    );
    return { account, service, task, contacts: { active, bounced } };
  };
  /** A pending sub-task, ready since `readySecondsAgo`; the earliest ready is leased first. */
  const pending = async (
    at: { account: string; task: string },
    contactId: string | null,
    readySecondsAgo: number,
  ) => {
    const id = uuidv7();
    await db.query(
      `INSERT INTO sub_tasks (id, task_id, account_id, contact_id, email, status, attempts, next_attempt_at, tracking_id, version, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, 'pending', 1, now() - make_interval(secs => $6), $7, 0, now(), now())`,
      [id, at.task, at.account, contactId, `${id}@example.com`, readySecondsAgo, id.replace(/-/g, '')],
    );
    return id;
  };
  const lease = (service: string, maxBatch: number) =>
    db.transaction((tx) =>
      leaseSubTasks(
        tx,
        store,
        { serviceId: service, owner: 'dispatcher-1', maxBatch, leaseMs: 60_000 },
        meta(),
      ),
    );
  const row = async (id: string) =>
    (await db.query(`SELECT status, last_error, version FROM sub_tasks WHERE id = $1`, [id]))[0];
  const skippedEvents = async (id: string) =>
    (
      await db.query(
        `SELECT data->>'reason' AS reason FROM events WHERE stream_id = $1 AND type = 'SubTaskSkipped'`,
        [`subtask-${id}`],
      )
    ).map((r: { reason: string }) => r.reason);

  beforeAll(async () => {
    env = await createTestEnvironment('lease_sub_tasks');
    db = createDataSource({ url: env.databaseUrl, poolSize: 2, applicationName: 'test' });
    await db.initialize();
    await runMigrations(db);
    store = new EventStore(db);
    store.register(...allProjections);
  });

  afterAll(async () => {
    await db.destroy();
    await env.dispose();
  });

  // A sub-task in flight when its contact hard-bounced escapes the webhook's skipping; if its
  // send then fails transiently it is pending again, for an address that must not be mailed.
  it('never leases a sub-task whose contact is suppressed, and skips it', async () => {
    const fixture = await given();
    const toBounced = await pending(fixture, fixture.contacts.bounced, 3);
    const toActive = await pending(fixture, fixture.contacts.active, 2);
    const withoutContact = await pending(fixture, null, 1);

    const result = await lease(fixture.service, 10);

    expect(result.kind).toBe('leased');
    expect(result.kind === 'leased' && result.leased.map((s) => s.id)).toEqual([toActive, withoutContact]);
    expect(await row(toBounced)).toEqual({ status: 'skipped', last_error: 'contact bounced', version: 1 });
    expect(await skippedEvents(toBounced)).toEqual(['contact bounced']);
    expect(await row(toActive)).toMatchObject({ status: 'sending' });
  });

  it('leases the ready work behind suppressed sub-tasks that filled the batch', async () => {
    const fixture = await given();
    const toBounced = await pending(fixture, fixture.contacts.bounced, 2);
    const toActive = await pending(fixture, fixture.contacts.active, 1);

    const result = await lease(fixture.service, 1);

    expect(result.kind === 'leased' && result.leased.map((s) => s.id)).toEqual([toActive]);
    expect(await row(toBounced)).toMatchObject({ status: 'skipped' });
  });

  it('completes a task whose last pending sub-tasks were for suppressed contacts', async () => {
    const fixture = await given();
    const toBounced = await pending(fixture, fixture.contacts.bounced, 1);

    expect((await lease(fixture.service, 10)).kind).toBe('no-work');

    expect(await row(toBounced)).toMatchObject({ status: 'skipped' });
    expect((await db.query(`SELECT status FROM tasks WHERE id = $1`, [fixture.task]))[0].status).toBe(
      'completed',
    );
  });
});
