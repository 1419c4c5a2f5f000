import { DataSource } from 'typeorm';
import { AppConfig } from '@edm/config';
import { uuidv7 } from '@edm/event-store';
import { createDataSource, runMigrations } from '@edm/persistence';
import { createTestEnvironment, TestEnvironment } from '@edm/testing';
import { diagnoseTask } from '@edm/workflows';
import { busLag, ingestBacklog, serviceHealth, taskProgress, unmatchedRatio } from './alert-rules';

/** The rules' queries against a real database, with the conditions written directly into the tables. */
describe('alert rules (Postgres)', () => {
  let env: TestEnvironment;
  let db: DataSource;
  let config: AppConfig;
  const account = uuidv7();
  const run = <T>(rule: (c: never) => Promise<T>, lag: Record<string, number> | null = {}) =>
    db.transaction((tx) => rule({ tx, config, consumerLag: lag } as never));

  const service = async (quota: { used: number; windowStart: string; exhaustedAt: string | null }) => {
    const id = uuidv7();
    await db.query(
      `INSERT INTO sending_services (id, account_id, name, provider, from_email, pace, daily_quota, quota_reset_hour_utc, created_at, updated_at)
       VALUES ($1, $2, $3, 'sandbox', 'a@example.com', '{"intervalMs":0}', 10, 6, now(), now())`,
      [id, account, `svc-${id.slice(-4)}`],
    );
    await db.query(
      `INSERT INTO service_runtime (service_id, quota_used, quota_window_start, quota_exhausted_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (service_id) DO UPDATE SET quota_used = $2, quota_window_start = $3, quota_exhausted_at = $4`,
      [id, quota.used, quota.windowStart, quota.exhaustedAt],
    );
    return id;
  };
  const task = async (serviceId: string, updatedAt = 'now()') => {
    const id = uuidv7();
    await db.query(
      `INSERT INTO tasks (id, account_id, name, subject, status, total, service_ids, created_at, updated_at)
       VALUES ($1, $2, 't', 's', 'sending', 1, ARRAY[$3::uuid], now(), ${updatedAt})`,
      [id, account, serviceId],
    );
    await db.query(
      `INSERT INTO sub_tasks (id, task_id, account_id, email, status, tracking_id, created_at, updated_at)
       VALUES ($1, $2, $3, 'x@example.com', 'pending', $4, now(), now())`,
      [uuidv7(), id, account, uuidv7()],
    );
    return id;
  };
  /** The start of the quota window (reset at 06:00 UTC) that holds `at`. */
  const windowOf = (at: Date) => {
    const start = Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate(), 6);
    return new Date(start <= at.getTime() ? start : start - 86_400_000);
  };

  beforeAll(async () => {
    env = await createTestEnvironment('alert_rules');
    config = env.config({
      MONITOR_TASK_STALL_MS: '60000',
      MONITOR_UNMATCHED_MIN_EVENTS: '4',
      MONITOR_UNMATCHED_RATIO: '0.5',
      MONITOR_RELAY_LAG_EVENTS: '2',
      MONITOR_CONSUMER_LAG_EVENTS: '100',
      MONITOR_INGEST_BACKLOG_MS: '60000',
    });
    db = createDataSource({ url: env.databaseUrl, poolSize: 2, applicationName: 'test' });
    await db.initialize();
    await runMigrations(db);
    await db.query(`INSERT INTO accounts VALUES ($1, 'acct', now())`, [account]);
  });

  afterAll(async () => {
    await db?.destroy();
    await env?.dispose();
  });

  it('holds a used-up quota exhausted in its window and frees it once the next window starts, before any lease', async () => {
    const current = windowOf(new Date()).toISOString();
    const previous = new Date(windowOf(new Date()).getTime() - 86_400_000).toISOString();
    const exhausted = await service({
      used: 10,
      windowStart: current,
      exhaustedAt: new Date().toISOString(),
    });
    const stale = await service({ used: 10, windowStart: previous, exhaustedAt: previous });
    const kinds = (await run(serviceHealth)).filter((c) => c.kind === 'service-quota-exhausted');
    expect(kinds.map((c) => c.subject)).toEqual([`service:${exhausted}`]);

    const blocked = await task(exhausted);
    const free = await task(stale);
    const progress = await run(taskProgress);
    expect(progress.find((c) => c.subject === `task:${blocked}`)?.kind).toBe('task-no-usable-service');
    expect(progress.find((c) => c.subject === `task:${free}`)).toBeUndefined();

    const thresholds = { stuckLeaseMs: 600_000, webhookGraceMs: 600_000 };
    const diagnosis = await db.transaction((tx) => diagnoseTask(tx, free, thresholds));
    expect(diagnosis?.services[0]).toMatchObject({ quotaUsed: 0, quotaLeft: 10, usable: true });
  });

  it('calls a task stalled when it has usable services and no progress beyond the threshold', async () => {
    const usable = await service({ used: 0, windowStart: new Date().toISOString(), exhaustedAt: null });
    const quiet = await task(usable, `now() - interval '2 minutes'`);
    const recent = await task(usable);
    const progress = await run(taskProgress);
    expect(progress.find((c) => c.subject === `task:${quiet}`)?.kind).toBe('task-stalled');
    expect(progress.find((c) => c.subject === `task:${recent}`)).toBeUndefined();
    await db.query(`INSERT INTO monitor_task_state (task_id, last_progress_at) VALUES ($1, now())`, [quiet]);
    expect((await run(taskProgress)).find((c) => c.subject === `task:${quiet}`)).toBeUndefined();
  });

  it('raises the unmatched ratio only above both the ratio and the minimum count', async () => {
    const log = uuidv7();
    await db.query(
      `INSERT INTO event_logs (id, source, path, headers, raw_body, verified, status) VALUES ($1, 'sandbox', '/', '{}', '{}', true, 'processed')`,
      [log],
    );
    const insert = (status: string, n: number) =>
      db.query(
        `INSERT INTO mail_events (id, event_log_id, provider, dedupe_key, raw_type, occurred_at, match_status)
         SELECT gen_random_uuid(), $3, 'sandbox', gen_random_uuid()::text, 'delivered', now(), $1 FROM generate_series(1, $2)`,
        [status, n, log],
      );
    await insert('unmatched', 3);
    expect(await run(unmatchedRatio)).toEqual([]);
    await insert('matched', 2);
    expect((await run(unmatchedRatio)).map((c) => c.kind)).toEqual(['webhook-unmatched-ratio']);
    await insert('matched', 2);
    expect(await run(unmatchedRatio)).toEqual([]);
  });

  it('raises an ingest backlog for stored webhooks left unprocessed too long, and only for those', async () => {
    const stored = (status: string, age: string) =>
      db.query(
        `INSERT INTO event_logs (id, received_at, source, path, headers, raw_body, verified, status)
         VALUES ($1, now() - $2::interval, 'sandbox', '/', '{}', '{}', true, $3)`,
        [uuidv7(), age, status],
      );
    await stored('received', '5 seconds');
    await stored('processed', '10 minutes');
    await stored('invalid', '10 minutes');
    expect(await run(ingestBacklog)).toEqual([]);
    await stored('received', '2 minutes');
    await stored('received', '90 seconds');
    const [backlog] = await run(ingestBacklog);
    expect(backlog).toMatchObject({ kind: 'ingest-backlog', subject: 'system', severity: 'critical' });
    expect(backlog.details.waiting).toBe(2);
    await db.query(`UPDATE event_logs SET status = 'processed' WHERE status = 'received'`);
    expect(await run(ingestBacklog)).toEqual([]);
  });

  it('measures relay lag from the events table and the checkpoint, and consumer lag per consumer', async () => {
    expect(await run(busLag, { dispatcher: 100, monitor: 101 })).toEqual([
      expect.objectContaining({ kind: 'consumer-lag', subject: 'consumer:monitor' }),
    ]);
    await db.query(
      `INSERT INTO events (id, stream_id, version, type, data, metadata, occurred_at)
       SELECT gen_random_uuid(), 'lag-' || g, 1, 'Test', '{}', '{}', now() FROM generate_series(1, 3) g`,
    );
    expect((await run(busLag)).map((c) => c.kind)).toEqual(['relay-lag']);
    // The bus unreachable: relay lag is still measured, from Postgres alone.
    expect((await run(busLag, null)).map((c) => c.kind)).toEqual(['relay-lag']);
  });
});
