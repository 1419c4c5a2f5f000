import { DataSource } from 'typeorm';
import { loadConfig } from '@edm/config';
import { EventStore, uuidv7 } from '@edm/event-store';
import { JsonLogger, Metrics } from '@edm/observability';
import { createDataSource, runMigrations } from '@edm/persistence';
import { EventBusSubscriber } from '@edm/platform';
import { allProjections } from '@edm/read-models';
import { createTestEnvironment, TestEnvironment } from '@edm/testing';
import { RawIntakeWriter } from '../intake/raw-intake.writer';
import { correlate, correlateByTrackingId, MailEventClues, STRATEGIES } from './correlate-mail-event';
import { MailEventProcessor } from './mail-event.processor';

/** Correlation and matching against a real database, one clue at a time. */
describe('mail event matching (Postgres)', () => {
  let env: TestEnvironment;
  let db: DataSource;
  let processor: MailEventProcessor;
  const account = uuidv7();
  const otherAccount = uuidv7();
  const service = uuidv7();
  const [taskA, taskB] = [uuidv7(), uuidv7()];
  const subTask = (task: string, email: string, extra: Record<string, unknown> = {}) => ({
    id: uuidv7(),
    task,
    email,
    tracking: uuidv7().replace(/-/g, ''),
    ...extra,
  });
  const sentAt = new Date(Date.now() - 60_000);
  const a = subTask(taskA, 'ann@example.com', { pmid: 'pm-ann-1' });
  const b = subTask(taskB, 'ann@example.com', { pmid: 'pm-ann-2' });
  const c = subTask(taskA, 'cid@example.com');

  const clues = (extra: Partial<MailEventClues>): MailEventClues => ({
    trackingId: null,
    providerMessageIds: [],
    headerMessageId: null,
    taskId: null,
    recipient: null,
    serviceId: null,
    accountId: account,
    occurredAt: new Date(),
    ...extra,
  });
  const run = (extra: Partial<MailEventClues>, strategies = STRATEGIES, errors: string[] = []) =>
    db.transaction((tx) => correlate(tx, clues(extra), 86_400_000, (s) => errors.push(s), strategies));

  /** A sub-task of task A with no send on record yet, in the given status. */
  const unsentSubTask = async (email: string, status: 'pending' | 'sending') => {
    const s = subTask(taskA, email);
    await db.query(
      `INSERT INTO sub_tasks (id, task_id, account_id, email, status, service_id, tracking_id, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now())`,
      [s.id, taskA, account, email, status, service, s.tracking],
    );
    return s;
  };
  /** A sandbox request as intake stores it; returns its event log id. */
  const storeSandboxRequest = async (events: Record<string, unknown>[]) => {
    const logId = uuidv7();
    await db.query(
      `INSERT INTO event_logs (id, source, service_id, path, headers, raw_body, verified) VALUES ($1, 'sandbox', $2, '/x', '{}', $3, false)`,
      [logId, service, JSON.stringify({ events })],
    );
    return logId;
  };

  beforeAll(async () => {
    env = await createTestEnvironment('matching');
    db = createDataSource({ url: env.databaseUrl, poolSize: 4, applicationName: 'test' });
    await db.initialize();
    await runMigrations(db);
    for (const id of [account, otherAccount])
      await db.query(`INSERT INTO accounts VALUES ($1, 'acct', now())`, [id]);
    await db.query(
      `INSERT INTO sending_services (id, account_id, name, provider, from_email, pace, created_at, updated_at)
       VALUES ($1, $2, 's', 'sandbox', 'a@example.com', '{"intervalMs":0}', now(), now())`,
      [service, account],
    );
    for (const t of [taskA, taskB]) {
      await db.query(
        `INSERT INTO tasks (id, account_id, name, subject, status, total, created_at, updated_at) VALUES ($1, $2, 't', 's', 'sending', 2, now(), now())`,
        [t, account],
      );
    }
    for (const s of [a, b, c]) {
      await db.query(
        `INSERT INTO sub_tasks (id, task_id, account_id, email, status, service_id, tracking_id, provider_message_id, sent_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'sent', $5, $6, $7, $8, now(), now())`,
        [
          s.id,
          s.task,
          account,
          s.email,
          service,
          s.tracking,
          (s as { pmid?: string }).pmid ?? null,
          s === b ? new Date() : sentAt,
        ],
      );
    }
    const config = loadConfig({ ...env.env, INGEST_UNMATCHED_MAX_AGE_MS: '600000' });
    const store = new EventStore(db);
    store.register(...allProjections);
    const metrics = new Metrics('test');
    const logger = new JsonLogger('test', 'silent');
    const bus = { addListener: () => undefined } as unknown as EventBusSubscriber;
    processor = new MailEventProcessor(
      db,
      store,
      new RawIntakeWriter(db, metrics),
      bus,
      logger,
      config,
      metrics,
    );
  });

  afterAll(async () => {
    await db.destroy();
    await env.dispose();
  });

  it('matches by our tracking id alone', async () => {
    expect(await run({ trackingId: a.tracking })).toMatchObject({ subTaskId: a.id, strategy: 'tracking-id' });
  });

  it('matches a batch by tracking id in one query, by the same rule as the strategy, and locks what it read', async () => {
    const { matches, subTasks } = await db.transaction((tx) =>
      correlateByTrackingId(tx, [
        { key: 'mine', trackingId: a.tracking, accountId: account },
        { key: 'unscoped', trackingId: b.tracking, accountId: null },
        { key: 'foreign', trackingId: c.tracking, accountId: otherAccount },
        { key: 'unknown', trackingId: 'no-such-tracking-id', accountId: account },
      ]),
    );
    expect(Object.fromEntries(matches)).toEqual({
      mine: { subTaskId: a.id, taskId: taskA, serviceId: service, strategy: 'tracking-id' },
      unscoped: { subTaskId: b.id, taskId: taskB, serviceId: service, strategy: 'tracking-id' },
    });
    // Every sub-task carrying one of the ids, in or out of the account, with what applying needs.
    expect([...subTasks.keys()].sort()).toEqual([a.id, b.id, c.id].sort());
    expect(subTasks.get(a.id)).toMatchObject({
      task_id: taskA,
      status: expect.any(String),
      version: expect.any(Number),
    });
  });

  it('matches by the provider message id alone', async () => {
    expect(await run({ providerMessageIds: ['nope', 'pm-ann-2'] })).toMatchObject({
      subTaskId: b.id,
      strategy: 'provider-message-id',
    });
  });

  it('matches by our Message-ID echoed in the headers alone', async () => {
    expect(await run({ headerMessageId: `<${c.tracking}@mail.example.com>` })).toMatchObject({
      subTaskId: c.id,
      strategy: 'message-id-header',
    });
  });

  it('matches by task id and recipient alone, never confusing two tasks to the same recipient', async () => {
    expect(await run({ taskId: taskA, recipient: 'ann@example.com' })).toMatchObject({
      subTaskId: a.id,
      strategy: 'task-and-recipient',
    });
    expect(await run({ taskId: taskB, recipient: 'ann@example.com' })).toMatchObject({
      subTaskId: b.id,
      strategy: 'task-and-recipient',
    });
  });

  it('matches by recipient, service and time window only when exactly one sub-task fits', async () => {
    expect(await run({ recipient: 'cid@example.com', serviceId: service })).toMatchObject({
      subTaskId: c.id,
      strategy: 'recipient-service-window',
    });
    // Two sends to ann fit the window: ambiguous, so no match.
    expect(await run({ recipient: 'ann@example.com', serviceId: service })).toBeNull();
  });

  it("never matches another account's sub-task", async () => {
    expect(await run({ trackingId: a.tracking, accountId: otherAccount })).toBeNull();
  });

  it('runs the next strategy when one fails', async () => {
    const errors: string[] = [];
    const broken = {
      name: 'tracking-id' as const,
      query: () => ({ sql: 'SELECT nonsense FROM nowhere', params: [] }),
    };
    const match = await run(
      { trackingId: a.tracking, taskId: taskA, recipient: 'ann@example.com' },
      [broken, ...STRATEGIES.slice(1)],
      errors,
    );
    expect(errors).toEqual(['tracking-id']);
    expect(match).toMatchObject({ subTaskId: a.id, strategy: 'task-and-recipient' });
  });

  it('retries an event that outran the send until the send is recorded, then applies it once', async () => {
    const early = await unsentSubTask('early@example.com', 'sending');
    const logId = await storeSandboxRequest([
      {
        eventId: 'e-early',
        type: 'delivered',
        messageId: 'pm-early',
        email: early.email,
        timestamp: Date.now(),
      },
    ]);
    await processor.drain();
    const state = async () =>
      (
        await db.query(
          `SELECT match_status, match_strategy, sub_task_id FROM mail_events WHERE event_log_id = $1`,
          [logId],
        )
      )[0];
    expect(await state()).toMatchObject({ match_status: 'pending', sub_task_id: null });
    // Backed off: the schedule would look again in a second at the earliest.
    const due = async () =>
      (
        await db.query(`SELECT next_match_at <= now() AS due FROM mail_events WHERE event_log_id = $1`, [
          logId,
        ])
      )[0].due;
    expect(await due()).toBe(false);
    // The send is recorded with the provider's id: the event is due again at once, and found.
    await db.query(
      `UPDATE sub_tasks SET status = 'sent', provider_message_id = 'pm-early', sent_at = now() WHERE id = $1`,
      [early.id],
    );
    expect(await processor.rematchSent([a.id])).toBe(0);
    expect(await due()).toBe(false);
    expect(await processor.rematchSent([early.id])).toBe(1);
    expect(await due()).toBe(true);
    await processor.drain();
    expect(await state()).toMatchObject({
      match_status: 'matched',
      match_strategy: 'provider-message-id',
      sub_task_id: early.id,
    });
    expect(
      (
        await db.query(`SELECT status, delivered_at IS NOT NULL AS dated FROM sub_tasks WHERE id = $1`, [
          early.id,
        ])
      )[0],
    ).toEqual({ status: 'delivered', dated: true });
    await processor.drain();
    expect(
      (
        await db.query(`SELECT count(*)::int AS n FROM events WHERE stream_id = $1`, [`subtask-${early.id}`])
      )[0].n,
    ).toBe(1);
  });

  it('keeps an event for a sub-task whose send is not on record waiting, then applies it once the send is recorded', async () => {
    // Its dispatcher died after the provider accepted the mail: the lease went back to pending,
    // and the provider's callbacks arrive before the resend (deduplicated) is recorded.
    const released = await unsentSubTask('released@example.com', 'pending');
    const event = { messageId: 'pm-released', email: released.email, timestamp: Date.now() };
    const logId = await storeSandboxRequest([
      // Found by the batch path (tracking id), and by matchOne (task and recipient).
      { ...event, eventId: 'e-released-1', type: 'delivered', trackingId: released.tracking },
      { ...event, eventId: 'e-released-2', type: 'open', taskId: taskA },
    ]);
    await processor.drain();
    await processor.drain();
    const states = async () =>
      db.query(
        `SELECT match_status, match_strategy, sub_task_id, next_match_at > now() AS backed_off
           FROM mail_events WHERE event_log_id = $1 ORDER BY dedupe_key`,
        [logId],
      );
    expect(await states()).toEqual([
      { match_status: 'pending', match_strategy: null, sub_task_id: null, backed_off: true },
      { match_status: 'pending', match_strategy: null, sub_task_id: null, backed_off: true },
    ]);
    const subTaskEvents = async () =>
      (
        await db.query(`SELECT count(*)::int AS n FROM events WHERE stream_id = $1`, [
          `subtask-${released.id}`,
        ])
      )[0].n;
    expect(await subTaskEvents()).toBe(0);

    await db.query(
      `UPDATE sub_tasks SET status = 'sent', provider_message_id = 'pm-released', sent_at = now() WHERE id = $1`,
      [released.id],
    );
    expect(await processor.rematchSent([released.id])).toBe(2);
    await processor.drain();
    expect(await states()).toEqual([
      { match_status: 'matched', match_strategy: 'tracking-id', sub_task_id: released.id, backed_off: false },
      {
        match_status: 'matched',
        match_strategy: 'provider-message-id',
        sub_task_id: released.id,
        backed_off: false,
      },
    ]);
    expect((await db.query(`SELECT status FROM sub_tasks WHERE id = $1`, [released.id]))[0].status).toBe(
      'opened',
    );
    await processor.drain();
    expect(await subTaskEvents()).toBe(2);
  });

  it('gives up on an event for nothing after the bounded age, and counts it', async () => {
    const logId = await storeSandboxRequest([
      {
        eventId: 'e-nothing',
        type: 'open',
        messageId: 'pm-nothing',
        email: 'nobody@example.com',
        timestamp: Date.now(),
      },
    ]);
    await processor.drain();
    await db.query(
      `UPDATE mail_events SET received_at = now() - interval '1 day', next_match_at = now() WHERE event_log_id = $1`,
      [logId],
    );
    await processor.drain();
    expect(
      (await db.query(`SELECT match_status FROM mail_events WHERE event_log_id = $1`, [logId]))[0]
        .match_status,
    ).toBe('unmatched');
    const recorded = await db.query(
      `SELECT data->>'matchStatus' AS s FROM events WHERE type = 'MailEventRecorded' AND data->>'eventLogId' = $1`,
      [logId],
    );
    expect(recorded.map((r: { s: string }) => r.s)).toEqual(['unmatched']);
  });
});
