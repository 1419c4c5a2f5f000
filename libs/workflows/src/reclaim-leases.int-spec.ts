import { DataSource } from 'typeorm';
import { EventStore, uuidv7 } from '@edm/event-store';
import { createDataSource, runMigrations } from '@edm/persistence';
import { allProjections } from '@edm/read-models';
import { createTestEnvironment, heldCancel, TestEnvironment, untilWaitingForALock } from '@edm/testing';
import { reclaimLeases } from './reclaim-leases';

/** Reclaiming expired leases while their task is being cancelled. */
describe('reclaimLeases (Postgres)', () => {
  let env: TestEnvironment;
  let db: DataSource;
  let store: EventStore;
  const account = uuidv7();
  const service = uuidv7();
  const meta = () => ({ correlationId: uuidv7(), causationId: null });

  beforeAll(async () => {
    env = await createTestEnvironment('reclaim_leases');
    db = createDataSource({ url: env.databaseUrl, poolSize: 3, applicationName: 'test' });
    await db.initialize();
    await runMigrations(db);
    await db.query(`INSERT INTO accounts VALUES ($1, 'acct', now())`, [account]);
    await db.query(
      `INSERT INTO sending_services (id, account_id, name, provider, from_email, pace, created_at, updated_at)
       VALUES ($1, $2, 's', 'sandbox', 'a@example.com', '{"intervalMs":0}', now(), now())`,
      [service, account],
    );
    store = new EventStore(db);
    store.register(...allProjections);
  });

  afterAll(async () => {
    await db.destroy();
    await env.dispose();
  });

  // The API's cancel turns only the sub-tasks pending at that moment into cancelled; a lease
  // reclaimed while it commits must see the cancel rather than go back to pending for good.
  it('cancels, not releases, an expired lease whose task a concurrent cancel committed', async () => {
    const task = uuidv7();
    const id = uuidv7();
    await db.query(
      `INSERT INTO tasks (id, account_id, name, subject, status, total, created_at, updated_at)
       VALUES ($1, $2, 't', 's', 'sending', 1, now(), now())`,
      [task, account],
    );
    await db.query(
      `INSERT INTO sub_tasks (id, task_id, account_id, email, status, service_id, lease_owner, lease_expires_at, attempts, tracking_id, version, created_at, updated_at)
       VALUES ($1, $2, $3, $4, 'allocated', $5, 'dispatcher-1', now() - interval '1 minute', 1, $6, 0, now(), now())`,
      [id, task, account, `${id}@example.com`, service, id.replace(/-/g, '')],
    );
    // The cancel as the API makes it, held open until the reaper waits for it.
    const cancel = await heldCancel(db, store, task);

    const reclaiming = db.transaction((tx) => reclaimLeases(tx, store, { expired: true }, meta()));
    await untilWaitingForALock(db);
    await cancel.commit();

    expect(await reclaiming).toBe(1);
    expect((await db.query(`SELECT status FROM sub_tasks WHERE id = $1`, [id]))[0].status).toBe('cancelled');
    expect(
      await db.query(`SELECT type FROM events WHERE stream_id = $1 ORDER BY version`, [`subtask-${id}`]),
    ).toEqual([{ type: 'SubTaskCancelled' }]);
  });
});
