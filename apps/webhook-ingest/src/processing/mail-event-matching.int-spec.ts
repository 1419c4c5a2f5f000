import { DataSource } from 'typeorm';
import { AppConfig, loadConfig } from '@edm/config';
import { EventStore, uuidv7 } from '@edm/event-store';
import { BATCH_EVENT_MAX_BYTES, DomainEvent, newEvent } from '@edm/events';
import { JsonLogger, Metrics } from '@edm/observability';
import { createDataSource, runMigrations } from '@edm/persistence';
import { EventBusSubscriber } from '@edm/platform';
import { allProjections } from '@edm/read-models';
import { createTestEnvironment, TestEnvironment } from '@edm/testing';
import { RawIntakeWriter } from '../intake/raw-intake.writer';
import { correlateAll, MailEventClues, STRATEGIES, strategyStatement } from './correlate-mail-event';
import { MailEventProcessor } from './mail-event.processor';

/** Correlation and matching against a real database, one clue at a time. */
describe('mail event matching (Postgres)', () => {
  let env: TestEnvironment;
  let db: DataSource;
  let processor: MailEventProcessor;
  /** A processor running its loops and bus listener, for the one test that needs it. */
  let live: MailEventProcessor | undefined;
  let store: EventStore;
  let config: AppConfig;
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
  /** One event's match, alone in its batch. */
  const run = async (extra: Partial<MailEventClues>, strategies = STRATEGIES, errors: string[] = []) => {
    const matches = await db.transaction((tx) =>
      correlateAll(tx, [{ key: 'one', clues: clues(extra) }], 86_400_000, (s) => errors.push(s), strategies),
    );
    return matches.get('one') ?? null;
  };

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
  /** A sent sub-task of its own, for the tests that move sub-tasks. */
  const sentSubTask = async (task: string, email: string, pmid: string | null = null) => {
    const s = subTask(task, email);
    await db.query(
      `INSERT INTO sub_tasks (id, task_id, account_id, email, status, service_id, tracking_id, provider_message_id, sent_at, created_at, updated_at)
       VALUES ($1, $2, $3, $4, 'sent', $5, $6, $7, $8, now(), now())`,
      [s.id, task, account, email, service, s.tracking, pmid, sentAt],
    );
    return s;
  };
  /** A parsed `delivered` event waiting to be matched, with only the clues given; returns its id. */
  const pendingEvent = async (
    dedupeKey: string,
    clues: { pmids?: string[]; recipient?: string; taskId?: string; headerMessageId?: string },
    receivedMsAgo = 0,
  ) => {
    const [logId, id] = [uuidv7(), uuidv7()];
    await db.query(
      `INSERT INTO event_logs (id, source, service_id, path, headers, raw_body, verified, status)
       VALUES ($1, 'sandbox', $2, '/x', '{}', '{}', false, 'processed')`,
      [logId, service],
    );
    await db.query(
      `INSERT INTO mail_events (id, event_log_id, provider, service_id, account_id, dedupe_key, type, raw_type, occurred_at,
                                recipient, provider_message_ids, task_id, header_message_id, received_at)
       VALUES ($1, $2, 'sandbox', $3, $4, $5, 'delivered', 'delivered', now(), $6, $7, $8, $9,
               now() - make_interval(secs => $10::float8 / 1000))`,
      [
        id,
        logId,
        service,
        account,
        dedupeKey,
        clues.recipient ?? null,
        clues.pmids ?? [],
        clues.taskId ?? null,
        clues.headerMessageId ?? null,
        receivedMsAgo,
      ],
    );
    return id;
  };
  const mailEvent = async (id: string) =>
    (
      await db.query(
        `SELECT match_status, match_strategy, sub_task_id, match_attempts, next_match_at > now() AS backed_off
           FROM mail_events WHERE id = $1`,
        [id],
      )
    )[0];
  const statusOf = async (id: string) =>
    (await db.query(`SELECT status FROM sub_tasks WHERE id = $1`, [id]))[0].status;

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
    config = loadConfig({ ...env.env, INGEST_UNMATCHED_MAX_AGE_MS: '600000' });
    store = new EventStore(db);
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
    await live?.beforeApplicationShutdown();
    await db.destroy();
    await env.dispose();
  });

  it('matches by our tracking id alone', async () => {
    expect(await run({ trackingId: a.tracking })).toMatchObject({ subTaskId: a.id, strategy: 'tracking-id' });
  });

  it('matches a batch by tracking id in one statement, by the same rule as the strategy', async () => {
    const matches = await db.transaction((tx) =>
      correlateAll(
        tx,
        [
          { key: 'mine', clues: clues({ trackingId: a.tracking }) },
          { key: 'unscoped', clues: clues({ trackingId: b.tracking, accountId: null }) },
          { key: 'foreign', clues: clues({ trackingId: c.tracking, accountId: otherAccount }) },
          { key: 'unknown', clues: clues({ trackingId: 'no-such-tracking-id' }) },
          // The same event twice in a batch is still one match, not two fitting sub-tasks.
          { key: 'mine', clues: clues({ trackingId: a.tracking }) },
        ],
        86_400_000,
        () => undefined,
      ),
    );
    expect(Object.fromEntries(matches)).toEqual({
      mine: { subTaskId: a.id, taskId: taskA, serviceId: service, strategy: 'tracking-id' },
      unscoped: { subTaskId: b.id, taskId: taskB, serviceId: service, strategy: 'tracking-id' },
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

  it('lets an event dated a little before its send was recorded match it, and never credits an older mail with it', async () => {
    const recorded = async (s: { id: string }) =>
      ((await db.query(`SELECT sent_at FROM sub_tasks WHERE id = $1`, [s.id]))[0].sent_at as Date).getTime();
    // The provider dated the event 3 s before our send's record of its answer.
    expect(
      await run({
        recipient: 'cid@example.com',
        serviceId: service,
        occurredAt: new Date((await recorded(c)) - 3_000),
      }),
    ).toMatchObject({ subTaskId: c.id, strategy: 'recipient-service-window' });
    // An event for ann's newer mail (b), dated 2 s before b's send was recorded: ann's older mail
    // (a) is in the window too, so it is ambiguous, never a's.
    expect(
      await run({
        recipient: 'ann@example.com',
        serviceId: service,
        occurredAt: new Date((await recorded(b)) - 2_000),
      }),
    ).toBeNull();
  });

  it("never matches another account's sub-task", async () => {
    expect(await run({ trackingId: a.tracking, accountId: otherAccount })).toBeNull();
  });

  // Each strategy runs as a prepared statement, whose plan Postgres may make generic (for any
  // parameter): both the plan for the value and the generic one are checked.
  it.each(['custom', 'generic'])('serves every strategy by an index (%s plan)', async (mode) => {
    for (const strategy of STRATEGIES) {
      const plan = await db.transaction(async (tx) => {
        // On these few rows a sequential scan would be cheaper: forbidding it shows whether an
        // index can serve the lookup at all.
        await tx.query('SET LOCAL enable_seqscan = off');
        await tx.query(`SET LOCAL plan_cache_mode = force_${mode}_plan`);
        await tx.query(`PREPARE strategy_plan AS ${strategyStatement(strategy)}`);
        const rows: { 'QUERY PLAN': string }[] = await tx.query(`EXPLAIN EXECUTE strategy_plan('[]')`);
        await tx.query('DEALLOCATE strategy_plan');
        return rows.map((row) => row['QUERY PLAN']).join('\n');
      });
      expect({ strategy: strategy.name, plan }).toEqual({
        strategy: strategy.name,
        plan: expect.stringMatching(/(Index (Only )?Scan using |Bitmap Index Scan on )sub_tasks_\w+/),
      });
      expect(plan).not.toMatch(/Seq Scan on sub_tasks/);
    }
  });

  it('runs the next strategy when one fails', async () => {
    const errors: string[] = [];
    const broken = {
      name: 'tracking-id' as const,
      clue: () => ({ tracking: a.tracking }),
      columns: 'tracking text',
      where: 'nonsense = c.tracking',
    };
    const match = await run(
      { trackingId: a.tracking, taskId: taskA, recipient: 'ann@example.com' },
      [broken, ...STRATEGIES.slice(1)],
      errors,
    );
    expect(errors).toEqual(['tracking-id']);
    expect(match).toMatchObject({ subTaskId: a.id, strategy: 'task-and-recipient' });
  });

  it('without an error handler, takes no savepoints and lets a failing strategy fail the transaction', async () => {
    const broken = {
      name: 'tracking-id' as const,
      clue: () => ({ tracking: a.tracking }),
      columns: 'tracking text',
      where: 'nonsense = c.tracking',
    };
    const outcome = await db
      .transaction((tx) =>
        correlateAll(tx, [{ key: 'one', clues: clues({ trackingId: a.tracking }) }], 86_400_000, undefined, [
          broken,
          ...STRATEGIES.slice(1),
        ]),
      )
      .catch((error: unknown) => error);
    expect(String(outcome)).toMatch(/nonsense/);
    // The same events, unbroken and without savepoints, match as with them.
    const matches = await db.transaction((tx) =>
      correlateAll(tx, [{ key: 'one', clues: clues({ trackingId: a.tracking }) }], 86_400_000),
    );
    expect(matches.get('one')).toMatchObject({ subTaskId: a.id, strategy: 'tracking-id' });
  });

  it('runs every strategy for a whole batch, each failing one reported once with the events it was for', async () => {
    const errors: { strategy: string; keys: string[] }[] = [];
    const broken = {
      name: 'tracking-id' as const,
      clue: (c: MailEventClues) => (c.trackingId ? { tracking: c.trackingId } : null),
      columns: 'tracking text',
      where: 'nonsense = c.tracking',
    };
    const matches = await db.transaction((tx) =>
      correlateAll(
        tx,
        [
          {
            key: 'by-task',
            clues: clues({ trackingId: a.tracking, taskId: taskA, recipient: 'ann@example.com' }),
          },
          { key: 'by-pmid', clues: clues({ trackingId: b.tracking, providerMessageIds: ['pm-ann-2'] }) },
          { key: 'by-header', clues: clues({ headerMessageId: `<${c.tracking}@mail.example.com>` }) },
          { key: 'ambiguous', clues: clues({ recipient: 'ann@example.com', serviceId: service }) },
          { key: 'foreign', clues: clues({ providerMessageIds: ['pm-ann-1'], accountId: otherAccount }) },
        ],
        86_400_000,
        (strategy, _error, keys) => errors.push({ strategy, keys }),
        [broken, ...STRATEGIES.slice(1)],
      ),
    );
    expect(errors).toEqual([{ strategy: 'tracking-id', keys: ['by-task', 'by-pmid'] }]);
    expect(Object.fromEntries([...matches].map(([key, m]) => [key, [m.subTaskId, m.strategy]]))).toEqual({
      'by-task': [a.id, 'task-and-recipient'],
      'by-pmid': [b.id, 'provider-message-id'],
      'by-header': [c.id, 'message-id-header'],
    });
  });

  it('settles a due batch at once: each event by its own first conclusive strategy, the rest backed off or, past the age, unmatched', async () => {
    const s1 = await sentSubTask(taskA, 'bulk1@example.com', 'pm-bulk-1');
    const s2 = await sentSubTask(taskA, 'bulk2@example.com');
    const s3 = await sentSubTask(taskB, 'bulk3@example.com');
    const s4 = await sentSubTask(taskA, 'bulk4@example.com');
    const ids = {
      pmid: await pendingEvent('bulk-pmid', { pmids: ['pm-bulk-1'] }),
      header: await pendingEvent('bulk-header', { headerMessageId: `<${s2.tracking}@mail.example.com>` }),
      task: await pendingEvent('bulk-task', { taskId: taskB, recipient: s3.email }),
      window: await pendingEvent('bulk-window', { recipient: s4.email }),
      young: await pendingEvent('bulk-young', { pmids: ['pm-bulk-none'], recipient: 'none@example.com' }),
      old: await pendingEvent('bulk-old', { recipient: 'none@example.com' }, 86_400_000),
    };
    await processor.drain();
    const expected: [string, string, string][] = [
      [ids.pmid, 'provider-message-id', s1.id],
      [ids.header, 'message-id-header', s2.id],
      [ids.task, 'task-and-recipient', s3.id],
      [ids.window, 'recipient-service-window', s4.id],
    ];
    for (const [id, strategy, subTaskId] of expected)
      expect(await mailEvent(id)).toMatchObject({
        match_status: 'matched',
        match_strategy: strategy,
        sub_task_id: subTaskId,
      });
    expect(await mailEvent(ids.young)).toMatchObject({
      match_status: 'pending',
      match_attempts: 1,
      backed_off: true,
    });
    expect(await mailEvent(ids.old)).toMatchObject({ match_status: 'unmatched', match_attempts: 1 });
    for (const s of [s1, s2, s3, s4]) expect(await statusOf(s.id)).toBe('delivered');
    // Recorded in batches, one event per provider event type of a batch.
    const recorded = await db.query(
      `SELECT r->>'mailEventId' AS id, r->>'matchStatus' AS status
         FROM events, jsonb_array_elements(data->'events') AS r
        WHERE type = 'MailEventsRecorded' AND r->>'mailEventId' = ANY ($1::text[]) ORDER BY 1`,
      [Object.values(ids)],
    );
    expect(recorded).toEqual(
      [
        ...[ids.pmid, ids.header, ids.task, ids.window].map((id) => ({ id, status: 'matched' })),
        { id: ids.old, status: 'unmatched' },
      ].sort((x, y) => x.id.localeCompare(y.id)),
    );
  });

  it('falls back to event by event when the batch fails: the event that cannot be applied is backed off, the others settle', async () => {
    const good = await sentSubTask(taskA, 'good@example.com', 'pm-good');
    const poisoned = await sentSubTask(taskA, 'poisoned@example.com', 'pm-poisoned');
    await db.query(`
      CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.dedupe_key = 'poison' AND NEW.match_status = 'matched' THEN RAISE EXCEPTION 'poisoned event'; END IF;
        RETURN NEW;
      END $$`);
    await db.query(
      `CREATE TRIGGER refuse_poison BEFORE UPDATE ON mail_events FOR EACH ROW EXECUTE FUNCTION refuse_poison()`,
    );
    try {
      const goodId = await pendingEvent('fine', { pmids: ['pm-good'] });
      const poisonId = await pendingEvent('poison', { pmids: ['pm-poisoned'] });
      await processor.drain();
      expect(await mailEvent(goodId)).toMatchObject({ match_status: 'matched', sub_task_id: good.id });
      expect(await statusOf(good.id)).toBe('delivered');
      expect(await mailEvent(poisonId)).toMatchObject({
        match_status: 'pending',
        match_attempts: 1,
        backed_off: true,
      });
      expect(await statusOf(poisoned.id)).toBe('sent');
    } finally {
      await db.query(`DROP TRIGGER refuse_poison ON mail_events`);
      await db.query(`DROP FUNCTION refuse_poison()`);
    }
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
    // Backed off: the schedule would look again in ten seconds at the earliest.
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
      // Found by the batch path (tracking id), and by the other strategies (task and recipient).
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
      `SELECT r->>'matchStatus' AS s FROM events, jsonb_array_elements(data->'events') AS r
        WHERE type = 'MailEventsRecorded' AND r->>'eventLogId' = $1`,
      [logId],
    );
    expect(recorded.map((r: { s: string }) => r.s)).toEqual(['unmatched']);
  });

  it("records a matched event for the service that sent its mail, whichever service's endpoint it came to", async () => {
    const other = uuidv7();
    await db.query(
      `INSERT INTO sending_services (id, account_id, name, provider, from_email, pace, created_at, updated_at)
       VALUES ($1, $2, 'shares the webhook URL', 'sandbox', 'b@example.com', '{"intervalMs":0}', now(), now())`,
      [other, account],
    );
    const mine = await sentSubTask(taskA, 'shared-url@example.com');
    const event = (eventId: string, extra: Record<string, unknown>) => ({
      eventId,
      type: 'delivered',
      email: 'shared-url@example.com',
      timestamp: Date.now(),
      ...extra,
    });
    const logId = uuidv7();
    await db.query(
      `INSERT INTO event_logs (id, source, service_id, path, headers, raw_body, verified) VALUES ($1, 'sandbox', $2, '/x', '{}', $3, false)`,
      [
        logId,
        other,
        JSON.stringify({
          events: [
            event('shared-1', { trackingId: mine.tracking }),
            event('shared-2', { messageId: 'pm-none' }),
          ],
        }),
      ],
    );
    await processor.drain();
    const recorded = await db.query(
      `SELECT r->>'serviceId' AS service, r->>'matchStatus' AS status FROM events, jsonb_array_elements(data->'events') AS r
        WHERE type = 'MailEventsRecorded' AND r->>'eventLogId' = $1 ORDER BY r->>'matchStatus'`,
      [logId],
    );
    expect(await statusOf(mine.id)).toBe('delivered');
    // Matched: the sender's; the one nothing matched yet is not settled, so not recorded.
    expect(recorded).toEqual([{ service, status: 'matched' }]);
  });

  it("counts each mail's soft bounces once toward its contact's limit, however many its provider reports", async () => {
    const contact = uuidv7();
    const task = uuidv7();
    const email = 'soft@example.com';
    await db.query(
      `INSERT INTO contacts (id, account_id, email, status, soft_bounces, created_at, updated_at) VALUES ($1, $2, $3, 'active', 0, now(), now())`,
      [contact, account, email],
    );
    await db.query(
      `INSERT INTO tasks (id, account_id, name, subject, status, total, created_at, updated_at) VALUES ($1, $2, 't', 's', 'sending', 4, now(), now())`,
      [task, account],
    );
    const mails = [0, 1, 2, 3].map(() => subTask(task, email));
    for (const [i, m] of mails.entries())
      await db.query(
        `INSERT INTO sub_tasks (id, task_id, account_id, contact_id, email, status, service_id, tracking_id, sent_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), now())`,
        [
          m.id,
          task,
          account,
          contact,
          email,
          i < 3 ? 'sent' : 'pending',
          service,
          m.tracking,
          i < 3 ? sentAt : null,
        ],
      );
    let n = 0;
    /** Temporary failures of these mails, each its own provider event (a retry's report). */
    const softBounces = async (...of: (typeof mails)[number][]) => {
      await storeSandboxRequest(
        of.map((m) => ({
          eventId: `soft-${(n += 1)}`,
          type: 'soft_bounce',
          trackingId: m.tracking,
          email,
          timestamp: Date.now(),
        })),
      );
      await processor.drain();
      return (await db.query(`SELECT status, soft_bounces FROM contacts WHERE id = $1`, [contact]))[0];
    };
    // The first mail deferred three times, in one request and in another: it counts once.
    expect(await softBounces(mails[0], mails[0], mails[0])).toEqual({ status: 'active', soft_bounces: 1 });
    expect(await softBounces(mails[0])).toEqual({ status: 'active', soft_bounces: 1 });
    expect(await softBounces(mails[1], mails[0], mails[1])).toEqual({ status: 'active', soft_bounces: 2 });
    expect(await statusOf(mails[3].id)).toBe('pending');
    // A third mail reaches the limit (3): the contact is suppressed, its pending mail skipped.
    expect(await softBounces(mails[2])).toEqual({ status: 'bounced', soft_bounces: 3 });
    expect(await statusOf(mails[3].id)).toBe('skipped');
    const counted = await db.query(
      `SELECT data->>'subTaskId' AS mail, (data->>'softBounces')::int AS n FROM events
        WHERE stream_id = $1 AND type = 'ContactSoftBounced' ORDER BY version`,
      [`contact-${contact}`],
    );
    expect(counted).toEqual(mails.slice(0, 3).map((m, i) => ({ mail: m.id, n: i + 1 })));
  });

  it('records a batch of thousands of provider events in MailEventsRecorded parts NATS can carry, each event once', async () => {
    const n = 2_000;
    const rows: { id: string; tracking_id: string }[] = await db.query(
      `INSERT INTO sub_tasks (id, task_id, account_id, email, status, service_id, tracking_id, sent_at, created_at, updated_at)
       SELECT gen_random_uuid(), $1, $2, 'mass' || i || '@example.com', 'sent', $3, 'mass-' || i, now(), now(), now()
         FROM generate_series(1, $4::int) AS i
       RETURNING id, tracking_id`,
      [taskB, account, service, n],
    );
    const logId = await storeSandboxRequest(
      rows.map((row, i) => ({
        eventId: `e-mass-${i}`,
        type: 'delivered',
        trackingId: row.tracking_id,
        email: `mass${i + 1}@example.com`,
        timestamp: Date.now(),
      })),
    );
    await processor.drain();
    const parts: { bytes: number; type: string; ids: string[] }[] = await db.query(
      `SELECT octet_length(data::text) AS bytes, data->>'type' AS type,
              ARRAY(SELECT r->>'mailEventId' FROM jsonb_array_elements(data->'events') AS r) AS ids
         FROM events WHERE type = 'MailEventsRecorded' AND data->'events'->0->>'eventLogId' = $1`,
      [logId],
    );
    expect(parts.length).toBeGreaterThan(1);
    for (const part of parts) {
      expect(part.type).toBe('delivered');
      // As the relay publishes it (jsonb's text, a space after every ':' and ','): near the
      // limit, far below NATS' 1 MB.
      expect(part.bytes).toBeLessThanOrEqual(BATCH_EVENT_MAX_BYTES * 1.1);
    }
    const ids = parts.flatMap((part) => part.ids);
    expect(ids).toHaveLength(n);
    expect(new Set(ids).size).toBe(n);
    const [{ delivered }] = await db.query(
      `SELECT count(*)::int AS delivered FROM sub_tasks WHERE task_id = $1 AND tracking_id LIKE 'mass-%' AND status = 'delivered'`,
      [taskB],
    );
    expect(delivered).toBe(n);
  }, 30_000);

  // Both forms are published on the subject webhook-ingest follows: the batch, and one send as
  // recorded before batches (an older dispatcher's, during a rollout).
  it.each(['SubTaskBatchSent', 'SubTaskSent'] as const)(
    'makes the events that outran a send due at once when the bus brings its %s',
    async (form) => {
      const slug = form.toLowerCase();
      const early = await unsentSubTask(`bus-early-${slug}@example.com`, 'sending');
      const messageId = `pm-bus-early-${slug}`;
      const logId = await storeSandboxRequest([
        {
          eventId: `e-bus-early-${slug}`,
          type: 'delivered',
          messageId,
          email: early.email,
          timestamp: Date.now(),
        },
      ]);
      await processor.drain();
      const state = async () =>
        (
          await db.query(
            `SELECT m.match_status, m.match_strategy, m.next_match_at > now() AS backed_off, s.status
             FROM mail_events m, sub_tasks s WHERE m.event_log_id = $1 AND s.id = $2`,
            [logId, early.id],
          )
        )[0];
      // Backed off for ten seconds at least: only the bus can make it due sooner.
      expect(await state()).toMatchObject({ match_status: 'pending', backed_off: true, status: 'sending' });

      // A running processor, whose bus listener is the one under test.
      let listener: ((event: DomainEvent) => void) | undefined;
      const bus = { addListener: (l: typeof listener) => (listener = l) } as unknown as EventBusSubscriber;
      const metrics = new Metrics('test');
      await live?.beforeApplicationShutdown();
      live = new MailEventProcessor(
        db,
        store,
        new RawIntakeWriter(db, metrics),
        bus,
        new JsonLogger('test', 'silent'),
        config,
        metrics,
      );
      live.onApplicationBootstrap();
      // The send, recorded as the dispatcher records it (one event for the batch), then delivered.
      const [sent] = await db.transaction((tx) =>
        store.append(
          tx,
          [
            {
              streamId: form === 'SubTaskBatchSent' ? `sends-${uuidv7()}` : `subtask-${early.id}`,
              expectedVersion: form === 'SubTaskBatchSent' ? 'no_stream' : 'any',
              events: [
                form === 'SubTaskBatchSent'
                  ? newEvent('SubTaskBatchSent', {
                      taskId: taskA,
                      serviceId: service,
                      sent: [
                        {
                          subTaskId: early.id,
                          providerMessageId: messageId,
                          sentAt: new Date().toISOString(),
                        },
                      ],
                    })
                  : newEvent('SubTaskSent', {
                      taskId: taskA,
                      subTaskId: early.id,
                      serviceId: service,
                      providerMessageId: messageId,
                      sentAt: new Date().toISOString(),
                    }),
              ],
            },
          ],
          { correlationId: uuidv7(), causationId: null },
        ),
      );
      listener!(sent);
      const deadline = Date.now() + 8_000;
      while ((await state()).match_status === 'pending' && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      expect(await state()).toMatchObject({
        match_status: 'matched',
        match_strategy: 'provider-message-id',
        status: 'delivered',
      });
    },
    15_000,
  );
});
