import { readFileSync } from 'node:fs';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Client } from 'pg';
import {
  apiClient,
  createTestEnvironment,
  eventually,
  ServiceProcess,
  startService,
  TestEnvironment,
  Json,
} from '@edm/testing';

/** The monitor with every other service, as processes: each rule fires on a real condition, once, and resolves. */
describe('monitor (e2e)', () => {
  let env: TestEnvironment;
  let api: ServiceProcess;
  let ingest: ServiceProcess;
  let monitor: ServiceProcess;
  const dispatchers: ServiceProcess[] = [];
  let db: Client;
  let key: string;
  let sink: Server;
  const delivered: { text: string }[] = [];
  let failNext = 0;

  const {
    call,
    sandboxService: sandbox,
    taskToTag: task,
  } = apiClient(
    () => api.url,
    () => key,
  );
  const alerts = async (kind: string, subject: string) =>
    (
      await db.query(
        `SELECT id, status FROM alerts WHERE kind = $1 AND subject = $2 ORDER BY first_seen_at`,
        [kind, subject],
      )
    ).rows as { id: string; status: string }[];
  const firing = (kind: string, subject: string) =>
    eventually(
      `${kind} firing`,
      async () => (await alerts(kind, subject)).some((a) => a.status === 'firing'),
      30_000,
      200,
    );
  const resolved = (kind: string, subject: string) =>
    eventually(
      `${kind} resolved`,
      async () => {
        const all = await alerts(kind, subject);
        return all.length > 0 && all.every((a) => a.status === 'resolved');
      },
      30_000,
      200,
    );
  const ingestEnv = () => ({
    ...env.env,
    INGEST_POLL_INTERVAL_MS: '200',
    INGEST_UNMATCHED_MAX_AGE_MS: '2000',
  });
  const completed = (taskId: string) =>
    eventually(
      'task completed',
      async () => (await call('GET', `/api/v1/tasks/${taskId}`)).status === 'completed',
      30_000,
      200,
    );
  const raisedSince = async (kind: string, subject: string, since: Date) =>
    (
      await db.query(
        `SELECT count(*)::int AS n FROM alerts WHERE kind = $1 AND subject = $2 AND first_seen_at >= $3`,
        [kind, subject, since],
      )
    ).rows[0].n as number;
  const dispatcherEnv = (extra: Record<string, string> = {}) => ({
    ...env.env,
    TRACKING_BASE_URL: ingest.url,
    DISPATCH_POLL_INTERVAL_MS: '250',
    DISPATCH_REAPER_INTERVAL_MS: '500',
    DISPATCH_RETRY_BASE_MS: '100',
    DISPATCH_RETRY_MAX_MS: '200',
    ...extra,
  });

  beforeAll(async () => {
    sink = createServer((request, response) => {
      let body = '';
      request.on('data', (c: Buffer) => (body += c.toString()));
      request.on('end', () => {
        if (failNext > 0) {
          failNext -= 1;
          response.writeHead(500).end();
          return;
        }
        delivered.push(JSON.parse(body) as { text: string });
        response.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((ok) => sink.listen(0, '127.0.0.1', () => ok()));
    env = await createTestEnvironment('monitor');
    api = await startService('api', env.env);
    ingest = await startService('webhook-ingest', ingestEnv());
    monitor = await startService('monitor', {
      ...env.env,
      MONITOR_INTERVAL_MS: '300',
      MONITOR_STUCK_LEASE_MS: '3000',
      MONITOR_WEBHOOK_GRACE_MS: '1500',
      MONITOR_SERVICE_FAILURES: '3',
      MONITOR_NOTIFY_COOLDOWN_MS: '3000',
      MONITOR_TASK_STALL_MS: '3000',
      MONITOR_UNMATCHED_MIN_EVENTS: '10',
      MONITOR_UNMATCHED_RATIO: '0.5',
      MONITOR_CONSUMER_LAG_EVENTS: '50',
      MONITOR_INGEST_BACKLOG_MS: '2000',
      MONITOR_ALERT_WEBHOOK_URL: `http://127.0.0.1:${(sink.address() as AddressInfo).port}/hook`,
    });
    dispatchers.push(await startService('dispatcher', dispatcherEnv()));
    key = readFileSync(join(env.home, 'admin-key'), 'utf8').trim();
    db = new Client({ connectionString: env.databaseUrl });
    await db.connect();
  }, 90_000);

  afterAll(async () => {
    await db?.end();
    await Promise.all([api, ingest, monitor, ...dispatchers].map((p) => p?.stop()));
    await env?.dispose();
    await new Promise<void>((ok) => sink?.close(() => ok()));
  }, 60_000);

  it('names the cause when a task has no usable service, and resolves when the service is unfrozen', async () => {
    const only = await sandbox('only-one');
    await call('POST', `/api/v1/services/${only}/freeze`, { reason: 'provider suspended the account' });
    const taskId = await task('nousable', 5, [only]);
    await firing('task-no-usable-service', `task:${taskId}`);
    await firing('service-frozen', `service:${only}`);
    const [alert] = (await call('GET', '/api/v1/alerts?status=firing&kind=task-no-usable-service')).items as {
      message: string;
      id: string;
    }[];
    expect(alert.message).toMatch(
      /5 sub-tasks .* pending and no usable service: only-one frozen \(provider suspended the account\)/,
    );
    expect((await call('POST', `/api/v1/alerts/${alert.id}/acknowledge`)).acknowledgedAt).toBeTruthy();
    await eventually(
      'sink got it',
      async () => delivered.some((d) => d.text.includes('task-no-usable-service')),
      10_000,
      100,
    );

    await call('POST', `/api/v1/services/${only}/unfreeze`);
    await resolved('task-no-usable-service', `task:${taskId}`);
    await resolved('service-frozen', `service:${only}`);
    await eventually(
      'task completed',
      async () => (await call('GET', `/api/v1/tasks/${taskId}`)).status === 'completed',
      20_000,
      200,
    );
    expect(await alerts('task-no-usable-service', `task:${taskId}`)).toHaveLength(1);
    await eventually(
      'resolution sent',
      async () => delivered.some((d) => d.text.startsWith('Resolved: task-no-usable-service')),
      10_000,
      100,
    );
  });

  it('raises webhook silence when a service sends and hears nothing back, and resolves on the next webhook', async () => {
    const quiet = await sandbox('quiet');
    const taskId = await task('quiet', 3, [quiet]);
    await eventually(
      'sent',
      async () => (await call('GET', `/api/v1/tasks/${taskId}`)).status === 'completed',
      20_000,
      200,
    );
    await firing('webhook-silence', `service:${quiet}`);
    const { rows } = await db.query(`SELECT tracking_id, email FROM sub_tasks WHERE task_id = $1 LIMIT 1`, [
      taskId,
    ]);
    const answer = await fetch(`${ingest.url}/api/webhooks/sandbox/${quiet}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        events: [
          {
            eventId: 'late-1',
            type: 'delivered',
            trackingId: rows[0].tracking_id,
            email: rows[0].email,
            timestamp: Date.now(),
          },
        ],
      }),
    });
    expect(answer.status).toBe(200);
    await resolved('webhook-silence', `service:${quiet}`);
    expect(await alerts('webhook-silence', `service:${quiet}`)).toHaveLength(1);
  });

  it('hears a service through the generic EngageLab path too: a matched callback there ends its webhook silence', async () => {
    const quiet = await sandbox('quiet-engagelab');
    const taskId = await task('quiet-el', 1, [quiet]);
    await completed(taskId);
    await firing('webhook-silence', `service:${quiet}`);
    const { rows } = await db.query(`SELECT tracking_id, email FROM sub_tasks WHERE task_id = $1`, [taskId]);
    const answer = await fetch(`${ingest.url}/api/webhooks/mail-event`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        server: 'email',
        message_id: `el-${rows[0].tracking_id}`,
        itime: Date.now(),
        status: { message_status: 'delivered', status_data: { tos: [rows[0].email] } },
        custom_args: { edm_tracking_id: rows[0].tracking_id },
      }),
    });
    expect(answer.status).toBe(200);
    await resolved('webhook-silence', `service:${quiet}`);
  });

  it('releases sub-tasks stuck under a dead dispatcher, which are then sent exactly once', async () => {
    await Promise.all(dispatchers.splice(0).map((d) => d.stop()));
    const victim = await startService('dispatcher', dispatcherEnv());
    const slow = await sandbox('stuck', { latencyMs: 30_000 });
    const taskId = await task('stuck', 4, [slow]);
    await eventually(
      'in flight',
      async () =>
        (
          await db.query(
            `SELECT count(*)::int AS n FROM sub_tasks WHERE task_id = $1 AND status = 'sending'`,
            [taskId],
          )
        ).rows[0].n > 0,
      20_000,
      100,
    );
    await victim.kill();
    await call('PATCH', `/api/v1/services/${slow}`, {
      options: { latencyMs: 0, callbacks: { delivered: 0 } },
    });
    dispatchers.push(await startService('dispatcher', dispatcherEnv()));
    await firing('stuck-sub-tasks', `task:${taskId}`);
    await eventually(
      'task completed',
      async () => (await call('GET', `/api/v1/tasks/${taskId}`)).status === 'completed',
      30_000,
      200,
    );
    const sent = await db.query(
      `SELECT count(*)::int AS n, count(m.idempotency_key)::int AS delivered FROM sub_tasks s LEFT JOIN sandbox_messages m ON m.idempotency_key = s.id::text
        WHERE s.task_id = $1 AND s.status = 'sent'`,
      [taskId],
    );
    expect(sent.rows[0]).toEqual({ n: 4, delivered: 4 });
    await resolved('stuck-sub-tasks', `task:${taskId}`);
    const released = await db.query(
      `SELECT count(*)::int AS n FROM events WHERE type = 'SubTaskReleased' AND data->>'taskId' = $1 AND data->>'reason' LIKE 'stuck lease released%'`,
      [taskId],
    );
    expect(released.rows[0].n).toBeGreaterThan(0);
  }, 90_000);

  it('raises service-failing and quota-exhausted on real conditions, and resolves them when the conditions clear', async () => {
    const failing = await sandbox('failing', { transientRate: 1 });
    const failTask = await task('failing', 3, [failing]);
    await firing('service-failing', `service:${failing}`);
    await call('PATCH', `/api/v1/services/${failing}`, {
      options: { latencyMs: 0, callbacks: { delivered: 0 } },
    });
    await completed(failTask);
    await resolved('service-failing', `service:${failing}`);

    const limited = await sandbox('limited', {}, { dailyQuota: 2 });
    const limitedTask = await task('limited', 4, [limited]);
    await firing('service-quota-exhausted', `service:${limited}`);
    expect(
      await db.query(`SELECT count(*)::int AS n FROM sub_tasks WHERE task_id = $1 AND status = 'sent'`, [
        limitedTask,
      ]),
    ).toMatchObject({ rows: [{ n: 2 }] });
    await call('PATCH', `/api/v1/services/${limited}`, { dailyQuota: 10 });
    await completed(limitedTask);
    await resolved('service-quota-exhausted', `service:${limited}`);
  }, 60_000);

  it('retries the HTTP sink until it answers and repeats a firing alert after the cool-down', async () => {
    const before = delivered.length;
    failNext = 2;
    const frozen = await sandbox('frozen-for-sink');
    await call('POST', `/api/v1/services/${frozen}/freeze`, { reason: 'sink test' });
    await eventually(
      'delivered after retries',
      async () => delivered.slice(before).some((d) => d.text.includes(`service-frozen (service:${frozen})`)),
      20_000,
      100,
    );
    expect(failNext).toBe(0);
    await eventually(
      'repeated after cool-down',
      async () =>
        delivered.some((d) => d.text.startsWith(`Still firing: service-frozen (service:${frozen})`)),
      20_000,
      200,
    );
    expect(await alerts('service-frozen', `service:${frozen}`)).toHaveLength(1);
  }, 60_000);

  it('diagnoses the incident (one service frozen with a reason, one disabled, 20 sub-tasks) and repair plus unfreezing completes it', async () => {
    const frozen = await sandbox('engagelab-like');
    const disabled = await sandbox('sendgrid-like');
    await call('POST', `/api/v1/services/${frozen}/freeze`, {
      reason: 'account under review by the provider',
    });
    await call('POST', `/api/v1/services/${disabled}/disable`, { reason: 'contract ended' });
    const taskId = await task('incident', 20, [frozen, disabled]);
    const diagnosis = (await call('GET', `/api/v1/tasks/${taskId}/diagnosis`)) as {
      verdict: string;
      counts: Record<string, number>;
      services: { name: string; status: string; usable: boolean }[];
      stuckLeases: { count: number };
    };
    expect(diagnosis.verdict).toMatch(
      /^20 sub-tasks pending and no usable service: service engagelab-like frozen because account under review by the provider; service sendgrid-like disabled \(contract ended\)$/,
    );
    expect(diagnosis.counts).toEqual({ pending: 20 });
    expect(diagnosis.services.map((s) => [s.name, s.status, s.usable])).toEqual([
      ['engagelab-like', 'frozen', false],
      ['sendgrid-like', 'disabled', false],
    ]);
    const first = (await call('POST', `/api/v1/tasks/${taskId}/repair`)) as Json;
    expect(first).toMatchObject({
      releasedLeases: 0,
      retriedWebhookEvents: 0,
      completed: false,
      changed: false,
      subTasksOutOfStepWithEvents: 0,
    });
    await call('POST', `/api/v1/services/${frozen}/unfreeze`);
    await eventually(
      'task completed',
      async () => (await call('GET', `/api/v1/tasks/${taskId}`)).status === 'completed',
      30_000,
      200,
    );
    const after = (await call('GET', `/api/v1/tasks/${taskId}/diagnosis`)) as { verdict: string };
    expect(after.verdict).toBe('completed: 20 sent, 0 failed, 0 unknown, 0 skipped');
    expect(await call('POST', `/api/v1/tasks/${taskId}/repair`)).toMatchObject({ changed: false });
  });

  it('calls a task stalled while no dispatcher runs, and resolves once sending moves again', async () => {
    await Promise.all(dispatchers.splice(0).map((d) => d.stop()));
    const since = new Date();
    const idle = await sandbox('idle');
    const taskId = await task('stalled', 3, [idle]);
    await firing('task-stalled', `task:${taskId}`);
    dispatchers.push(await startService('dispatcher', dispatcherEnv()));
    await completed(taskId);
    await resolved('task-stalled', `task:${taskId}`);
    expect(await raisedSince('task-stalled', `task:${taskId}`, since)).toBe(1);
  }, 60_000);

  it('raises the unmatched-webhook ratio when callbacks name nothing we sent, and resolves when matched ones outweigh them', async () => {
    const since = new Date();
    const talkative = await sandbox('talkative', { callbacks: { delivered: 1 }, callbackDelayMs: 0 });
    const answer = await fetch(`${ingest.url}/api/webhooks/sandbox/${talkative}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        events: Array.from({ length: 12 }, (_, i) => ({
          eventId: `stranger-${i}`,
          type: 'delivered',
          trackingId: `no-such-mail-${i}`,
          email: `stranger-${i}@example.com`,
          timestamp: Date.now(),
        })),
      }),
    });
    expect(answer.status).toBe(200);
    await firing('webhook-unmatched-ratio', 'system');
    const taskId = await task('talkative', 20, [talkative]);
    await completed(taskId);
    await resolved('webhook-unmatched-ratio', 'system');
    expect(await raisedSince('webhook-unmatched-ratio', 'system', since)).toBe(1);
  }, 60_000);

  it('raises consumer lag while webhook-ingest is down and events pile up for it, and resolves when it catches up', async () => {
    const since = new Date();
    await ingest.stop();
    const busy = await sandbox('busy', { callbacks: { delivered: 0 } }, { pace: { intervalMs: 1 } });
    const taskId = await task('busy', 60, [busy]);
    await completed(taskId);
    await firing('consumer-lag', 'consumer:webhook-ingest');
    ingest = await startService('webhook-ingest', ingestEnv(), { port: ingest.port });
    await resolved('consumer-lag', 'consumer:webhook-ingest');
    expect(await raisedSince('consumer-lag', 'consumer:webhook-ingest', since)).toBe(1);
  }, 60_000);

  it('raises an ingest backlog while stored webhooks wait with webhook-ingest down, and resolves once it has processed them', async () => {
    const since = new Date();
    await ingest.stop();
    // What a replica stored and answered just before it went away.
    await db.query(
      `INSERT INTO event_logs (id, source, path, headers, raw_body, verified)
       SELECT gen_random_uuid(), 'sandbox', '/api/webhooks/sandbox/x', '{}', '{"type":"delivered"}', true FROM generate_series(1, 3)`,
    );
    await firing('ingest-backlog', 'system');
    ingest = await startService('webhook-ingest', ingestEnv(), { port: ingest.port });
    await resolved('ingest-backlog', 'system');
    expect(await raisedSince('ingest-backlog', 'system', since)).toBe(1);
    const { rows } = await db.query(`SELECT count(*)::int AS n FROM event_logs WHERE status = 'received'`);
    expect(rows[0].n).toBe(0);
  }, 60_000);

  it('keeps at most one firing alert per kind and subject', async () => {
    const { rows } = await db.query(
      `SELECT kind, subject, count(*)::int AS n FROM alerts WHERE status = 'firing' GROUP BY 1, 2 HAVING count(*) > 1`,
    );
    expect(rows).toEqual([]);
    const metrics = await (await fetch(`${monitor.url}/metrics`)).text();
    expect(metrics).toMatch(/edm_alerts_firing\{[^}]*kind="service-frozen"[^}]*\} [1-9]/);
  });
});
