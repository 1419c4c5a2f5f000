import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import {
  callApi,
  createTestEnvironment,
  eventually,
  ServiceProcess,
  startService,
  TestEnvironment,
  Json,
} from '@edm/testing';

/** The dispatcher as processes, with the API, on real Postgres and NATS: the incident and its cousins. */
describe('dispatcher (e2e)', () => {
  let env: TestEnvironment;
  let api: ServiceProcess;
  const dispatchers: ServiceProcess[] = [];
  let db: Client;
  let adminKey: string;

  const dispatcherEnv = (extra: Record<string, string> = {}) => ({
    ...env.env,
    DISPATCH_POLL_INTERVAL_MS: '250',
    DISPATCH_REAPER_INTERVAL_MS: '300',
    DISPATCH_RETRY_BASE_MS: '200',
    DISPATCH_RETRY_MAX_MS: '1000',
    RELAY_POLL_INTERVAL_MS: '200',
    TRACKING_BASE_URL: 'http://127.0.0.1:9',
    ...extra,
  });

  const call = (key: string, method: string, path: string, body?: unknown) =>
    callApi(api.url, key, method, path, body);

  /** A tenant of its own per scenario, so scenarios share the processes but not the work. */
  const tenant = async (name: string) => {
    const account = await call(adminKey, 'POST', '/api/v1/accounts', { name });
    const key = account.apiKey as string;
    return {
      key,
      service: async (serviceName: string, pace: Json, options: Json = {}, extra: Json = {}) =>
        (
          await call(key, 'POST', '/api/v1/services', {
            name: serviceName,
            provider: 'sandbox',
            from: { email: 'news@example.com' },
            pace,
            options: { latencyMs: 0, callbacks: { delivered: 0 }, ...options },
            ...extra,
          })
        ).id as string,
      task: async (tag: string, count: number, extra: Json = {}) => {
        for (let i = 0; i < count; i += 5_000) {
          const contacts = Array.from({ length: Math.min(5_000, count - i) }, (_, j) => ({
            email: `${tag}-${i + j}@example.com`,
            name: `N${i + j}`,
            tags: [tag],
          }));
          await call(key, 'POST', '/api/v1/contacts', { contacts });
        }
        return (
          await call(key, 'POST', '/api/v1/tasks', {
            name: tag,
            subject: 'Hello {{name}}',
            text: 'Hi {{name}}',
            recipients: { tags: [tag] },
            ...extra,
          })
        ).id as string;
      },
      get: (taskId: string) => call(key, 'GET', `/api/v1/tasks/${taskId}`),
      post: (path: string, body?: unknown) => call(key, 'POST', path, body),
    };
  };

  const statusCounts = async (taskId: string): Promise<Record<string, number>> =>
    Object.fromEntries(
      (
        await db.query(
          `SELECT status, count(*)::int AS n FROM sub_tasks WHERE task_id = $1 GROUP BY status`,
          [taskId],
        )
      ).rows.map((r) => [r.status, r.n]),
    );

  const sendGaps = async (serviceId: string): Promise<number[]> => {
    const { rows } = await db.query(
      `SELECT accepted_at FROM sandbox_messages WHERE service_id = $1 ORDER BY accepted_at`,
      [serviceId],
    );
    return rows.slice(1).map((r, i) => r.accepted_at.getTime() - rows[i].accepted_at.getTime());
  };

  const exactlyOnce = async (taskId: string) => {
    const { rows } = await db.query(
      `SELECT count(*)::int AS subtasks, count(m.idempotency_key)::int AS delivered, count(DISTINCT m.recipient)::int AS recipients
         FROM sub_tasks s LEFT JOIN sandbox_messages m ON m.idempotency_key = s.id::text WHERE s.task_id = $1`,
      [taskId],
    );
    return rows[0];
  };

  beforeAll(async () => {
    env = await createTestEnvironment('dispatch');
    api = await startService('api', { ...env.env, RELAY_POLL_INTERVAL_MS: '200' });
    adminKey = readFileSync(join(env.home, 'admin-key'), 'utf8').trim();
    dispatchers.push(await startService('dispatcher', dispatcherEnv()));
    db = new Client({ connectionString: env.databaseUrl });
    await db.connect();
  }, 60_000);

  afterAll(async () => {
    await db?.end();
    const codes = await Promise.all([api, ...dispatchers].map((p) => p?.stop()));
    expect(codes.every((c) => c === 0 || c === null)).toBe(true);
    await env?.dispose();
  });

  it('replays the incident: 20 sub-tasks over two services at 310 ms and 180 ms, all sent, paces held, counts exact', async () => {
    const t = await tenant('incident');
    const slow = await t.service('slow', { intervalMs: 310 });
    const fast = await t.service('fast', { intervalMs: 180 });
    const taskId = await t.task('incident', 20);
    const snapshots: Json[] = [];
    await eventually(
      'task completed',
      async () => {
        const task = await t.get(taskId);
        snapshots.push(task.counts as Json);
        return task.status === 'completed';
      },
      30_000,
      100,
    );
    for (const counts of snapshots) {
      const c = counts as Record<string, number>;
      expect(c.total).toBe(20);
      expect(
        c.pending + c.allocated + c.sending + c.sent + c.failed + c.unknown + c.skipped + c.cancelled,
      ).toBe(20);
    }
    const final = (await t.get(taskId)) as {
      counts: Record<string, number>;
      services: { serviceId: string; counts: Record<string, number> }[];
    };
    expect(final.counts).toMatchObject({ total: 20, sent: 20, pending: 0, allocated: 0, sending: 0 });
    const perService = Object.fromEntries(final.services.map((s) => [s.serviceId, s.counts.sent]));
    expect(perService[slow]).toBeGreaterThan(0);
    expect(perService[fast]).toBeGreaterThan(perService[slow]);
    expect(perService[slow] + perService[fast]).toBe(20);
    for (const [serviceId, pace] of [
      [slow, 310],
      [fast, 180],
    ] as const) {
      const gaps = await sendGaps(serviceId);
      expect(Math.min(...gaps)).toBeGreaterThanOrEqual(pace);
    }
    expect(await exactlyOnce(taskId)).toEqual({ subtasks: 20, delivered: 20, recipients: 20 });
  });

  it('lets three dispatchers send 5,000 sub-tasks over four services exactly once, each pace held globally', async () => {
    dispatchers.push(
      await startService('dispatcher', dispatcherEnv()),
      await startService('dispatcher', dispatcherEnv()),
    );
    const t = await tenant('scale');
    const services = await Promise.all(
      [0, 1, 2, 3].map((i) => t.service(`scale-${i}`, { perSecond: 400, burst: 20 })),
    );
    const started = Date.now();
    const taskId = await t.task('scale', 5_000);
    await eventually('5,000 sent', async () => (await t.get(taskId)).status === 'completed', 120_000, 250);
    expect(await exactlyOnce(taskId)).toEqual({ subtasks: 5_000, delivered: 5_000, recipients: 5_000 });
    const owners = await db.query(
      `SELECT count(DISTINCT metadata->>'actor')::int AS n FROM events WHERE type = 'SubTaskBatchLeased' AND data->>'taskId' = $1`,
      [taskId],
    );
    expect(owners.rows[0].n).toBeGreaterThanOrEqual(2);
    for (const serviceId of services) {
      // In any one-second window: at most the rate plus the burst.
      const { rows } = await db.query(
        `SELECT max(c)::int AS peak FROM (
           SELECT count(*) OVER (ORDER BY accepted_at RANGE BETWEEN CURRENT ROW AND INTERVAL '999 milliseconds' FOLLOWING) AS c
             FROM sandbox_messages WHERE service_id = $1) w`,
        [serviceId],
      );
      // Receive times, not slots: each is taken when a dispatcher's event loop gets to the send,
      // and with three dispatchers, the API, webhook-ingest, Postgres and NATS on two cores, one
      // stalled loop sends mails of earlier slots together (full-suite runs saw 444 and 485). The
      // slots themselves are exact (service-capacity.spec.ts) and the gaps of single-slot paces
      // are checked strictly above; what this checks is that the pace holds across replicas: one
      // not held globally would show twice the rate (800) or more.
      expect(rows[0].peak).toBeLessThanOrEqual(Math.ceil((400 + 20) * 1.5));
    }
    expect(Date.now() - started).toBeGreaterThan((5_000 / 1_600) * 1_000 - 1_000);
  }, 180_000);

  it('reclaims the leases of a dispatcher killed with SIGKILL: every sub-task ends sent exactly once, none left allocated', async () => {
    const t = await tenant('killed');
    // The victim runs alone, with slow sends and short leases: it dies holding leases, some mid-request.
    await Promise.all(dispatchers.splice(0).map((d) => d.stop()));
    const victim = await startService('dispatcher', dispatcherEnv({ DISPATCH_LEASE_MS: '2000' }));
    await t.service('killed-slow', { perSecond: 50, burst: 10 }, { latencyMs: 1_500 });
    const taskId = await t.task('killed', 60);
    await eventually('the victim is mid-request', async () => {
      const { rows } = await db.query(
        `SELECT count(*)::int AS n FROM sub_tasks WHERE task_id = $1 AND status = 'sending'`,
        [taskId],
      );
      return rows[0].n > 0;
    });
    await victim.kill();
    dispatchers.push(await startService('dispatcher', dispatcherEnv()));
    await eventually('task completed', async () => (await t.get(taskId)).status === 'completed', 60_000, 250);
    const counts = await statusCounts(taskId);
    expect(counts).toEqual({ sent: 60 });
    const reclaimed = await db.query(
      `SELECT count(*)::int AS n FROM events WHERE type = 'SubTaskReleased' AND data->>'taskId' = $1 AND data->>'reason' LIKE 'lease expired%'`,
      [taskId],
    );
    expect(reclaimed.rows[0].n).toBeGreaterThan(0);
    expect(await exactlyOnce(taskId)).toEqual({ subtasks: 60, delivered: 60, recipients: 60 });
  }, 90_000);

  it('freezes a service on an account error while the others carry on, and a probe brings it back', async () => {
    const t = await tenant('frozen');
    const broken = await t.service('broken', { intervalMs: 50 }, { accountErrorRate: 1 });
    const healthy = await t.service('healthy', { intervalMs: 50 });
    const taskId = await t.task('frozen', 20);
    await eventually('task completed', async () => (await t.get(taskId)).status === 'completed', 30_000, 100);
    const brokenState = await call(t.key, 'GET', `/api/v1/services/${broken}`);
    expect(brokenState).toMatchObject({
      status: 'frozen',
      statusReason: 'sandbox: simulated account suspension',
    });
    const final = (await t.get(taskId)) as {
      counts: Record<string, number>;
      services: { serviceId: string; counts: Record<string, number> }[];
    };
    expect(final.counts.sent).toBe(20);
    expect(final.services.find((s) => s.serviceId === healthy)?.counts.sent).toBe(20);

    // Fix the account, let the cool-down pass: the next probe unfreezes it for good.
    await call(t.key, 'PATCH', `/api/v1/services/${broken}`, {
      options: { latencyMs: 0, callbacks: { delivered: 0 }, accountErrorRate: 0 },
    });
    await db.query(`UPDATE sending_services SET frozen_until = now() WHERE id = $1`, [broken]);
    await call(t.key, 'POST', `/api/v1/services/${healthy}/disable`, {});
    const second = await t.task('frozen-2', 5);
    await eventually(
      'probe succeeded',
      async () => (await t.get(second)).status === 'completed',
      30_000,
      100,
    );
    expect((await call(t.key, 'GET', `/api/v1/services/${broken}`)).status).toBe('active');
    const events = await db.query(
      `SELECT type, data->>'reason' AS reason FROM events WHERE stream_id = $1 ORDER BY version`,
      [`service-${broken}`],
    );
    expect(events.rows.map((r) => r.type)).toEqual(
      expect.arrayContaining(['ServiceFrozen', 'ServiceUnfrozen']),
    );
  }, 60_000);

  it('stops at exactly the daily quota and says so', async () => {
    const t = await tenant('quota');
    const service = await t.service('quota', { perSecond: 100, burst: 10 }, {}, { dailyQuota: 7 });
    const taskId = await t.task('quota', 20);
    await eventually('quota reached', async () => (await statusCounts(taskId)).sent === 7, 20_000, 100);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await statusCounts(taskId)).toEqual({ sent: 7, pending: 13 });
    expect(await call(t.key, 'GET', `/api/v1/services/${service}`)).toMatchObject({
      quotaUsed: 7,
      quotaLeft: 0,
    });
    const exhausted = await db.query(
      `SELECT count(*)::int AS n FROM events WHERE stream_id = $1 AND type = 'ServiceQuotaExhausted'`,
      [`service-${service}`],
    );
    expect(exhausted.rows[0].n).toBe(1);
  });

  it('gives the quota back for attempts that never reached the provider, so an outage does not use it up', async () => {
    const t = await tenant('quota-back');
    // Nothing listens on port 9: every request is refused before it is written.
    const service = await t.service(
      'quota-back',
      { perSecond: 100, burst: 10 },
      {},
      {
        provider: 'sendgrid',
        credentials: { apiKey: 'SG.x' },
        options: { baseUrl: 'http://127.0.0.1:9' },
        dailyQuota: 3,
      },
    );
    const taskId = await t.task('quota-back', 5);
    const attempts = async () =>
      (
        await db.query(
          `SELECT count(*)::int AS n FROM events
            WHERE type IN ('SubTaskRetryScheduled', 'SubTaskFailed') AND data->>'taskId' = $1`,
          [taskId],
        )
      ).rows[0].n;
    // Twice the quota in attempts, none of which reached the provider: without the quota given
    // back, leasing would have stopped at 3.
    await eventually('attempts past the quota', async () => (await attempts()) >= 6, 30_000, 100);
    // Cancelled while its sub-tasks go round their retries (the rebuild below replays that too);
    // once nothing is in flight, every attempt's count has been given back.
    await t.post(`/api/v1/tasks/${taskId}/cancel`);
    await eventually(
      'quota given back',
      async () => (await call(t.key, 'GET', `/api/v1/services/${service}`)).quotaUsed === 0,
      10_000,
      100,
    );
  }, 60_000);

  it('honours pause within a second, resumes, and cancel leaves nothing pending', async () => {
    const t = await tenant('pause');
    await t.service('pause', { intervalMs: 100 });
    const taskId = await t.task('pause', 40);
    await eventually('some sent', async () => ((await statusCounts(taskId)).sent ?? 0) >= 3, 20_000, 50);
    await t.post(`/api/v1/tasks/${taskId}/pause`);
    await new Promise((r) => setTimeout(r, 1_000));
    const leasedAfterPause = async () =>
      (
        await db.query(
          `SELECT coalesce(sum(jsonb_array_length(data->'subTasks')), 0)::int AS n FROM events
            WHERE type = 'SubTaskBatchLeased' AND data->>'taskId' = $1`,
          [taskId],
        )
      ).rows[0].n;
    const frozenCount = await leasedAfterPause();
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await leasedAfterPause()).toBe(frozenCount);
    await t.post(`/api/v1/tasks/${taskId}/resume`);
    await eventually('sending again', async () => (await leasedAfterPause()) > frozenCount, 10_000, 50);
    await t.post(`/api/v1/tasks/${taskId}/cancel`);
    await eventually(
      'nothing in flight',
      async () => {
        const c = await statusCounts(taskId);
        return !c.pending && !c.allocated && !c.sending;
      },
      10_000,
      100,
    );
    const c = await statusCounts(taskId);
    expect((c.sent ?? 0) + (c.cancelled ?? 0)).toBe(40);
    expect(c.cancelled).toBeGreaterThan(0);
  });

  it('does not starve a small task behind a huge one on the same service', async () => {
    const t = await tenant('fair');
    await t.service('fair', { perSecond: 50, burst: 1 });
    const huge = await t.task('fair-huge', 3_000);
    await eventually(
      'huge task started',
      async () => ((await statusCounts(huge)).sent ?? 0) > 0,
      20_000,
      100,
    );
    const small = await t.task('fair-small', 5);
    await eventually(
      'small task completed',
      async () => (await t.get(small)).status === 'completed',
      20_000,
      100,
    );
    expect((await statusCounts(huge)).pending).toBeGreaterThan(2_500);
    await t.post(`/api/v1/tasks/${huge}/cancel`);
  }, 60_000);

  it('starts a scheduled task on time and sends only through the services it allows', async () => {
    const t = await tenant('scheduled');
    const allowed = await t.service('allowed', { intervalMs: 20 });
    const other = await t.service('not-allowed', { intervalMs: 20 });
    const startAt = new Date(Date.now() + 2_000);
    const taskId = await t.task('scheduled', 10, {
      scheduledAt: startAt.toISOString(),
      serviceIds: [allowed],
    });
    expect((await t.get(taskId)).status).toBe('scheduled');
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await statusCounts(taskId)).toEqual({ pending: 10 });
    await eventually('task completed', async () => (await t.get(taskId)).status === 'completed', 20_000, 100);
    const { rows } = await db.query(
      `SELECT min(m.accepted_at) AS first, count(*) FILTER (WHERE m.service_id = $2)::int AS elsewhere
         FROM sandbox_messages m JOIN sub_tasks s ON m.idempotency_key = s.id::text WHERE s.task_id = $1`,
      [taskId, other],
    );
    expect(rows[0].first.getTime()).toBeGreaterThanOrEqual(startAt.getTime());
    expect(rows[0].elsewhere).toBe(0);
  });

  it('on SIGTERM stops leasing, records what is in flight, gives back the rest, and exits 0', async () => {
    const t = await tenant('drain');
    await Promise.all(dispatchers.splice(0).map((d) => d.stop()));
    const leaving = await startService('dispatcher', dispatcherEnv());
    await t.service('drain', { perSecond: 40, burst: 10 }, { latencyMs: 400 });
    const taskId = await t.task('drain', 200);
    await eventually('mid-flight', async () => ((await statusCounts(taskId)).sending ?? 0) > 0, 20_000, 50);
    expect(await leaving.stop()).toBe(0);
    const held = await db.query(
      `SELECT count(*)::int AS n FROM sub_tasks WHERE task_id = $1 AND status IN ('allocated', 'sending')`,
      [taskId],
    );
    expect(held.rows[0].n).toBe(0);
    const counts = await statusCounts(taskId);
    expect(counts.sent).toBeGreaterThan(0);
    expect(counts.sent + counts.pending).toBe(200);
    dispatchers.push(await startService('dispatcher', dispatcherEnv()));
    await eventually(
      'finished by another replica',
      async () => (await t.get(taskId)).status === 'completed',
      30_000,
      200,
    );
  }, 60_000);

  it('rebuilds every read model from the events of all these runs, equal to the live tables', async () => {
    const tables = [
      'tasks',
      'sub_tasks',
      'contacts',
      'sending_services',
      'templates',
      'accounts',
      'api_keys',
    ];
    const before: Record<string, unknown[]> = {};
    // Quiesce: every task in a final state, so the live tables stop moving.
    await eventually(
      'all quiet',
      async () =>
        (await db.query(`SELECT count(*)::int AS n FROM sub_tasks WHERE status IN ('allocated','sending')`))
          .rows[0].n === 0,
      30_000,
      200,
    );
    for (const table of tables) before[table] = (await db.query(`SELECT * FROM ${table} ORDER BY id`)).rows;
    const { rebuildReadModels, EventStore } = await import('@edm/event-store');
    const { createDataSource } = await import('@edm/persistence');
    const { allProjections } = await import('@edm/read-models');
    const ds = createDataSource({ url: env.databaseUrl, poolSize: 2, applicationName: 'rebuild' });
    await ds.initialize();
    const store = new EventStore(ds);
    store.register(...allProjections);
    await rebuildReadModels(ds, store);
    await ds.destroy();
    for (const table of tables)
      expect({ table, rows: (await db.query(`SELECT * FROM ${table} ORDER BY id`)).rows }).toEqual({
        table,
        rows: before[table],
      });
  }, 60_000);
});
