import { DataSource } from 'typeorm';
import { EventStore, uuidv7 } from '@edm/event-store';
import { createDataSource, runMigrations } from '@edm/persistence';
import { allProjections } from '@edm/read-models';
import { createTestEnvironment, heldCancel, TestEnvironment, untilWaitingForALock } from '@edm/testing';
import { DispatchService } from './lease-sub-tasks';
import { recordOutcomes } from './record-outcomes';
import { decideOutcome } from './send-outcome';

/** Recording a batch's outcomes against rows that moved on while the batch was being sent. */
describe('recordOutcomes (Postgres)', () => {
  let env: TestEnvironment;
  let db: DataSource;
  let store: EventStore;
  const owner = 'dispatcher-1';
  const account = uuidv7();
  const task = uuidv7();
  const service: DispatchService = {
    id: uuidv7(),
    accountId: account,
    name: 's',
    provider: 'sandbox',
    status: 'active',
    frozenUntil: null,
    statusReason: null,
    limits: { pace: { intervalMs: 0 }, dailyQuota: null, quotaResetHourUtc: 0 },
    fromEmail: 'a@example.com',
    fromName: null,
    options: {},
    credentialsSealed: null,
    updatedAt: new Date(),
    frozenCount: 0,
  };
  const sentAt = new Date('2026-12-06T12:00:00.000Z');

  /**
   * A sub-task of the task in the given status, holding no provider message id yet; `version` 0
   * for one whose own stream an outcome appends to (it has no events before).
   */
  const subTask = async (status: string, leaseOwner: string | null, version = 2) => {
    const id = uuidv7();
    await db.query(
      `INSERT INTO sub_tasks (id, task_id, account_id, email, status, service_id, lease_owner, attempts, tracking_id, version, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, now(), now())`,
      [id, task, account, `${id}@example.com`, status, service.id, leaseOwner, id.replace(/-/g, ''), version],
    );
    return id;
  };
  /** The outcome of sending sub-task `id` of `taskId` on its first attempt, as the dispatcher decides it. */
  const resultOf = (id: string, taskId: string, outcome: Parameters<typeof decideOutcome>[1]) => ({
    subTask: {
      id,
      taskId,
      email: `${id}@example.com`,
      trackingId: id.replace(/-/g, ''),
      attempt: 1,
      contactName: null,
      attributes: null,
    },
    decision: decideOutcome(
      { subTaskId: id, taskId, serviceId: service.id, attempt: 1 },
      outcome,
      { maxAttempts: 3, retryBaseMs: 1_000, retryMaxMs: 60_000, idempotentProvider: true, random: () => 0.5 },
      sentAt,
    ),
  });
  /**
   * Records `results` in one transaction, as the dispatcher does after its batch, leased in quota
   * window `quotaWindowStart`; the dropped ids.
   */
  const record = async (results: ReturnType<typeof resultOf>[], quotaWindowStart: Date | null = null) => {
    const dropped: string[] = [];
    await db.transaction((tx) =>
      recordOutcomes(
        tx,
        store,
        service,
        results,
        quotaWindowStart,
        () => new Date(),
        { correlationId: uuidv7(), causationId: null },
        owner,
        (subTaskId) => dropped.push(subTaskId),
      ),
    );
    return dropped;
  };
  /** Records that the provider accepted each of `ids`. */
  const recordSent = (ids: string[]) =>
    record(ids.map((id) => resultOf(id, task, { kind: 'sent', providerMessageId: `pm-${id}` })));
  const row = async (id: string) =>
    (await db.query(`SELECT status, provider_message_id, sent_at FROM sub_tasks WHERE id = $1`, [id]))[0];
  /** The SubTaskBatchSent events naming the sub-task. */
  const batchesSending = async (id: string) =>
    (
      await db.query(
        `SELECT count(*)::int AS n FROM events
          WHERE type = 'SubTaskBatchSent' AND data->'sent' @> jsonb_build_array(jsonb_build_object('subTaskId', $1::text))`,
        [id],
      )
    )[0].n;

  beforeAll(async () => {
    env = await createTestEnvironment('record_outcomes');
    db = createDataSource({ url: env.databaseUrl, poolSize: 3, applicationName: 'test' });
    await db.initialize();
    await runMigrations(db);
    await db.query(`INSERT INTO accounts VALUES ($1, 'acct', now())`, [account]);
    await db.query(
      `INSERT INTO sending_services (id, account_id, name, provider, from_email, pace, created_at, updated_at)
       VALUES ($1, $2, 's', 'sandbox', 'a@example.com', '{"intervalMs":0}', now(), now())`,
      [service.id, account],
    );
    await db.query(`INSERT INTO service_runtime (service_id) VALUES ($1)`, [service.id]);
    await db.query(
      `INSERT INTO tasks (id, account_id, name, subject, status, total, created_at, updated_at)
       VALUES ($1, $2, 't', 's', 'sending', 4, now(), now())`,
      [task, account],
    );
    store = new EventStore(db);
    store.register(...allProjections);
  });

  afterAll(async () => {
    await db.destroy();
    await env.dispose();
  });

  // A provider's `accepted` webhook can arrive while the dispatcher is still sending the rest of a
  // paced batch, and moves the sub-task from sending to sent before the outcome is recorded.
  it('records a send whose sub-task a webhook already marked sent, keeping the status', async () => {
    const id = await subTask('sent', null);
    expect(await recordSent([id])).toEqual([]);
    expect(await row(id)).toEqual({ status: 'sent', provider_message_id: `pm-${id}`, sent_at: sentAt });
    expect(await batchesSending(id)).toBe(1);
  });

  it('records a send whose sub-task a webhook already marked delivered, keeping the status', async () => {
    const id = await subTask('delivered', null);
    expect(await recordSent([id])).toEqual([]);
    expect(await row(id)).toEqual({ status: 'delivered', provider_message_id: `pm-${id}`, sent_at: sentAt });
    expect(await batchesSending(id)).toBe(1);
  });

  it('drops the outcome of a lease reclaimed back to pending', async () => {
    const id = await subTask('pending', null);
    expect(await recordSent([id])).toEqual([id]);
    expect(await row(id)).toEqual({ status: 'pending', provider_message_id: null, sent_at: null });
    expect(await batchesSending(id)).toBe(0);
  });

  it('gives back the quota of mails of which nothing reached the provider, in the window they were counted in only', async () => {
    const window = new Date('2026-12-07T00:00:00.000Z');
    const setQuota = (used: number) =>
      db.query(`UPDATE service_runtime SET quota_used = $2, quota_window_start = $3 WHERE service_id = $1`, [
        service.id,
        used,
        window,
      ]);
    const quotaUsed = async () =>
      (await db.query(`SELECT quota_used FROM service_runtime WHERE service_id = $1`, [service.id]))[0]
        .quota_used;
    const notSent = { kind: 'transient', reason: 'request not sent: ECONNREFUSED', notSent: true } as const;
    await setQuota(10);
    const batch = [
      resultOf(await subTask('sending', owner, 0), task, notSent),
      // Reclaimed meanwhile: its outcome is dropped, but it did not go out either.
      resultOf(await subTask('pending', null, 0), task, notSent),
      // These reached the provider, which may have counted them.
      resultOf(await subTask('sending', owner, 0), task, { kind: 'transient', reason: 'HTTP 503: busy' }),
      resultOf(await subTask('sending', owner, 0), task, {
        kind: 'permanent',
        reason: 'HTTP 400: bad address',
      }),
      resultOf(await subTask('sending', owner, 0), task, { kind: 'sent', providerMessageId: 'pm-quota' }),
    ];
    await record(batch, window);
    expect(await quotaUsed()).toBe(8);

    // Leased in the window before: the count it was in was reset since, nothing to give back.
    await setQuota(3);
    await record(
      [resultOf(await subTask('sending', owner, 0), task, notSent)],
      new Date('2026-12-06T00:00:00.000Z'),
    );
    expect(await quotaUsed()).toBe(3);
    // No window known, nothing given back; and never below zero.
    await record([resultOf(await subTask('sending', owner, 0), task, notSent)], null);
    expect(await quotaUsed()).toBe(3);
    await setQuota(0);
    await record([resultOf(await subTask('sending', owner, 0), task, notSent)], window);
    expect(await quotaUsed()).toBe(0);
  });

  it('records a send of a lease still held', async () => {
    const id = await subTask('sending', owner);
    expect(await recordSent([id])).toEqual([]);
    expect(await row(id)).toEqual({ status: 'sent', provider_message_id: `pm-${id}`, sent_at: sentAt });
    expect(await batchesSending(id)).toBe(1);
  });

  // The API's cancel turns only the sub-tasks pending at that moment into cancelled; one being
  // sent comes back to pending afterwards, and must then see the cancel rather than stay pending.
  it('cancels, not retries, a sub-task whose task a concurrent cancel committed', async () => {
    const cancelledTask = uuidv7();
    const id = uuidv7();
    await db.query(
      `INSERT INTO tasks (id, account_id, name, subject, status, total, created_at, updated_at)
       VALUES ($1, $2, 't', 's', 'sending', 1, now(), now())`,
      [cancelledTask, account],
    );
    await db.query(
      `INSERT INTO sub_tasks (id, task_id, account_id, email, status, service_id, lease_owner, attempts, tracking_id, version, created_at, updated_at)
       VALUES ($1, $2, $3, $4, 'sending', $5, $6, 1, $7, 0, now(), now())`,
      [id, cancelledTask, account, `${id}@example.com`, service.id, owner, id.replace(/-/g, '')],
    );
    // The cancel as the API makes it, held open until the recording waits for it.
    const cancel = await heldCancel(db, store, cancelledTask);

    const recording = record([resultOf(id, cancelledTask, { kind: 'transient', reason: 'try later' })]);
    await untilWaitingForALock(db);
    await cancel.commit();
    await recording;

    expect((await row(id)).status).toBe('cancelled');
    const events = await db.query(`SELECT type FROM events WHERE stream_id = $1 ORDER BY version`, [
      `subtask-${id}`,
    ]);
    expect(events).toEqual([{ type: 'SubTaskCancelled' }]);
  });
});
