/**
 * Detection delay of each alert rule: the time from the moment a condition becomes alert-worthy
 * (created, plus the rule's threshold) to the alert being raised, with the default evaluation
 * interval (MONITOR_INTERVAL_MS = 15 s) and thresholds shortened so the run takes a minute.
 * Goal: ≤ 60 s beyond each rule's threshold.
 *
 *   npm run build && node -r @swc-node/register bench/monitor.ts
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import {
  apiClient,
  createTestEnvironment,
  PrivateNats,
  ServiceProcess,
  startPrivateNats,
  startService,
} from '@edm/testing';
import { log, machine, printTable, waitFor, watchdog } from './bench-util';

const THRESHOLDS = {
  stuck: 5_000,
  grace: 5_000,
  stall: 10_000,
  failures: 5,
  unmatchedAge: 3_000,
  relayLag: 200,
  consumerLag: 200,
  ingestBacklog: 5_000,
};
const GOAL_S = 60;

async function main(): Promise<void> {
  log(machine());
  // A NATS server of the bench's own: the relay-lag condition is the bus going away.
  const nats: PrivateNats = await startPrivateNats();
  const env = await createTestEnvironment('bench-monitor');
  env.env.NATS_URL = nats.url;
  const processes: ServiceProcess[] = [];
  const db = new Client({ connectionString: env.databaseUrl });
  const cleanup = async () => {
    await db.end().catch(() => undefined);
    await Promise.all(processes.map((p) => p.stop().catch(() => null)));
    await env.dispose().catch(() => undefined);
    await nats.destroy();
  };
  const disarm = watchdog(10 * 60_000, cleanup);
  try {
    const api = await startService('api', env.env);
    const ingestEnv = { ...env.env, INGEST_UNMATCHED_MAX_AGE_MS: String(THRESHOLDS.unmatchedAge) };
    let ingest = await startService('webhook-ingest', ingestEnv);
    const dispatcherEnv = {
      ...env.env,
      TRACKING_BASE_URL: ingest.url,
      DISPATCH_RETRY_BASE_MS: '100',
      DISPATCH_RETRY_MAX_MS: '200',
    };
    let dispatcher = await startService('dispatcher', dispatcherEnv);
    const monitor = await startService('monitor', {
      ...env.env,
      MONITOR_STUCK_LEASE_MS: String(THRESHOLDS.stuck),
      MONITOR_WEBHOOK_GRACE_MS: String(THRESHOLDS.grace),
      MONITOR_TASK_STALL_MS: String(THRESHOLDS.stall),
      MONITOR_SERVICE_FAILURES: String(THRESHOLDS.failures),
      MONITOR_RELAY_LAG_EVENTS: String(THRESHOLDS.relayLag),
      MONITOR_CONSUMER_LAG_EVENTS: String(THRESHOLDS.consumerLag),
      MONITOR_INGEST_BACKLOG_MS: String(THRESHOLDS.ingestBacklog),
    });
    processes.push(api, ingest, monitor);
    await db.connect();
    const key = readFileSync(join(env.home, 'admin-key'), 'utf8').trim();
    const {
      call,
      sandboxService: service,
      taskToTag: task,
    } = apiClient(
      () => api.url,
      () => key,
    );
    const dbNow = async () => ((await db.query('SELECT clock_timestamp() AS t')).rows[0].t as Date).getTime();
    const first = async (sql: string, params: unknown[]) => {
      const row = (await db.query(sql, params)).rows[0] as { t: Date | null } | undefined;
      return row?.t ? row.t.getTime() : null;
    };

    // Each condition: when it became alert-worthy (ms, Postgres clock), and the alert's subject.
    const conditions: {
      rule: string;
      threshold: string;
      subject: string;
      since: () => Promise<number | null>;
    }[] = [];

    const frozen = await service('frozen');
    const frozenAt = await dbNow();
    await call('POST', `/api/v1/services/${frozen}/freeze`, { reason: 'bench' });
    conditions.push({
      rule: 'service-frozen',
      threshold: 'none',
      subject: `service:${frozen}`,
      since: async () => frozenAt,
    });

    const lonely = await task('lonely', 3, [frozen]);
    conditions.push({
      rule: 'task-no-usable-service',
      threshold: 'none',
      subject: `task:${lonely}`,
      since: () => first(`SELECT created_at AS t FROM tasks WHERE id = $1`, [lonely]),
    });

    const quiet = await service('quiet');
    await task('quiet', 3, [quiet]);
    conditions.push({
      rule: 'webhook-silence',
      threshold: `${THRESHOLDS.grace / 1000} s grace`,
      subject: `service:${quiet}`,
      since: async () =>
        ((await first(`SELECT min(accepted_at) AS t FROM sandbox_messages WHERE service_id = $1`, [quiet])) ??
          NaN) + THRESHOLDS.grace,
    });

    const failing = await service('failing', { transientRate: 1 });
    await task('failing', 10, [failing]);
    conditions.push({
      rule: 'service-failing',
      threshold: `${THRESHOLDS.failures} failures`,
      subject: `service:${failing}`,
      since: () =>
        first(
          `SELECT occurred_at AS t FROM events WHERE type = 'SubTaskRetryScheduled' AND data->>'serviceId' = $1 ORDER BY global_position OFFSET $2 LIMIT 1`,
          [failing, THRESHOLDS.failures - 1],
        ),
    });

    const limited = await service('limited', {}, { dailyQuota: 2 });
    await task('limited', 4, [limited]);
    conditions.push({
      rule: 'service-quota-exhausted',
      threshold: 'quota 2',
      subject: `service:${limited}`,
      since: () =>
        first(`SELECT occurred_at AS t FROM events WHERE type = 'ServiceQuotaExhausted' AND stream_id = $1`, [
          `service-${limited}`,
        ]),
    });

    const slowPace = await service('slow-pace', {}, { pace: { intervalMs: 3_600_000 } });
    const stalled = await task('stalled', 3, [slowPace]);
    conditions.push({
      rule: 'task-stalled',
      threshold: `${THRESHOLDS.stall / 1000} s`,
      subject: `task:${stalled}`,
      since: async () =>
        ((await first(
          `SELECT max(occurred_at) AS t FROM events WHERE data->>'taskId' = $1 AND type LIKE 'SubTask%'`,
          [stalled],
        )) ?? NaN) + THRESHOLDS.stall,
    });

    const stuckService = await service('stuck', { latencyMs: 55_000 });
    const stuck = await task('stuck', 2, [stuckService]);
    await waitFor(
      'stuck sends in flight',
      async () =>
        (await db.query(`SELECT 1 FROM sub_tasks WHERE task_id = $1 AND status = 'sending'`, [stuck]))
          .rowCount! > 0,
      20_000,
    );
    await dispatcher.kill();
    dispatcher = await startService('dispatcher', dispatcherEnv);
    processes.push(dispatcher);
    conditions.push({
      rule: 'stuck-sub-tasks',
      threshold: `${THRESHOLDS.stuck / 1000} s`,
      subject: `task:${stuck}`,
      since: async () =>
        ((await first(
          `SELECT min(updated_at) AS t FROM sub_tasks WHERE task_id = $1 AND status = 'sending'`,
          [stuck],
        )) ?? NaN) + THRESHOLDS.stuck,
    });

    // Callbacks naming nothing we sent, to a service of their own: 25 of 25 unmatched once they
    // are older than the (shortened) unmatched age; the rule needs 20 events and a 20% share.
    const stranger = await service('stranger');
    const strangers = await fetch(`${ingest.url}/api/webhooks/sandbox/${stranger}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        events: Array.from({ length: 25 }, (_, i) => ({
          eventId: `stranger-${i}`,
          type: 'delivered',
          trackingId: `unknown-${i}`,
          email: `stranger-${i}@example.com`,
          timestamp: Date.now(),
        })),
      }),
    });
    if (strangers.status !== 200) throw new Error(`stranger webhooks answered ${strangers.status}`);
    conditions.push({
      rule: 'webhook-unmatched-ratio',
      threshold: `20 events, ${THRESHOLDS.unmatchedAge / 1000} s unmatched age`,
      subject: 'system',
      since: () =>
        first(
          `SELECT occurred_at AS t FROM events, jsonb_array_elements(data->'events') AS r
            WHERE type = 'MailEventsRecorded' AND r->>'matchStatus' = 'unmatched'
            ORDER BY global_position OFFSET 19 LIMIT 1`,
          [],
        ),
    });

    const rows: string[][] = [];
    const sinces = new Map<string, number>();
    await waitFor(
      'every rule fired',
      async () => {
        for (const c of conditions)
          if (!sinces.has(c.rule)) {
            const since = await c.since();
            if (since !== null && !Number.isNaN(since)) sinces.set(c.rule, since);
          }
        const fired = await db.query(`SELECT kind, subject FROM alerts`);
        return conditions.every((c) => fired.rows.some((r) => r.kind === c.rule && r.subject === c.subject));
      },
      5 * 60_000,
      500,
    );
    for (const c of conditions) {
      const raised = (await first(
        `SELECT min(first_seen_at) AS t FROM alerts WHERE kind = $1 AND subject = $2`,
        [c.rule, c.subject],
      ))!;
      const delay = (raised - (sinces.get(c.rule) ?? raised)) / 1000;
      rows.push([
        c.rule,
        c.threshold,
        `${delay.toFixed(1)} s`,
        `≤ ${GOAL_S} s`,
        delay <= GOAL_S ? 'PASS' : 'MISS',
      ]);
    }

    /**
     * Conditions that take a service or the bus away: created one at a time, the moment they hold
     * taken by polling every 100 ms (Postgres clock), then the alert awaited.
     */
    const measure = async (
      rule: string,
      subject: string,
      threshold: string,
      create: () => Promise<void>,
      holds: () => Promise<boolean>,
    ) => {
      await create();
      let since = NaN;
      await waitFor(
        `${rule} raised`,
        async () => {
          if (Number.isNaN(since) && (await holds())) since = await dbNow();
          return (await db.query(`SELECT 1 FROM alerts WHERE kind = $1 AND subject = $2`, [rule, subject]))
            .rowCount!;
        },
        3 * 60_000,
        100,
      );
      const raised = (await first(
        `SELECT min(first_seen_at) AS t FROM alerts WHERE kind = $1 AND subject = $2`,
        [rule, subject],
      ))!;
      const delay = (raised - since) / 1000;
      rows.push([
        rule,
        threshold,
        `${delay.toFixed(1)} s`,
        `≤ ${GOAL_S} s`,
        delay <= GOAL_S ? 'PASS' : 'MISS',
      ]);
    };
    const contacts = (tag: string, count: number) =>
      call('POST', '/api/v1/contacts', {
        contacts: Array.from({ length: count }, (_, i) => ({ email: `${tag}-${i}@example.com` })),
      });
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    await measure(
      'consumer-lag',
      'consumer:webhook-ingest',
      `${THRESHOLDS.consumerLag} events`,
      async () => {
        // webhook-ingest consumes the sends alone: pile those up while it is down.
        await ingest.stop();
        const busy = await service('busy', {}, { pace: { intervalMs: 1 } });
        await task('busy', 2 * THRESHOLDS.consumerLag, [busy]);
      },
      async () => {
        const info = await jsm.consumers.info(env.stream, 'webhook-ingest');
        return info.num_pending + info.num_ack_pending > THRESHOLDS.consumerLag;
      },
    );
    await nc.close();
    ingest = await startService('webhook-ingest', ingestEnv);
    processes.push(ingest);
    await measure(
      'relay-lag',
      'system',
      `${THRESHOLDS.relayLag} events`,
      async () => {
        await nats.stop();
        await contacts('unpublished', 2 * THRESHOLDS.relayLag);
      },
      async () =>
        Number(
          (
            await db.query(
              `SELECT (SELECT coalesce(max(global_position), 0) FROM events) - coalesce((SELECT max(position) FROM relay_checkpoints), 0) AS lag`,
            )
          ).rows[0].lag,
        ) > THRESHOLDS.relayLag,
    );
    await nats.start();
    await measure(
      'ingest-backlog',
      'system',
      `${THRESHOLDS.ingestBacklog} ms`,
      async () => {
        // Stored and answered by webhook-ingest just before it went away.
        await ingest.stop();
        await db.query(
          `INSERT INTO event_logs (id, source, path, headers, raw_body, verified)
           SELECT gen_random_uuid(), 'sandbox', '/api/webhooks/sandbox/x', '{}', '{"type":"delivered"}', true FROM generate_series(1, 3)`,
        );
      },
      async () =>
        (
          await db.query(
            `SELECT 1 FROM event_logs WHERE status = 'received' AND received_at < clock_timestamp() - make_interval(secs => $1::float8 / 1000)`,
            [THRESHOLDS.ingestBacklog],
          )
        ).rowCount! > 0,
    );
    log(
      `monitor interval: default (15 s); thresholds shortened: stuck ${THRESHOLDS.stuck} ms, webhook grace ${THRESHOLDS.grace} ms, stall ${THRESHOLDS.stall} ms, unmatched age ${THRESHOLDS.unmatchedAge} ms, relay lag ${THRESHOLDS.relayLag} events, consumer lag ${THRESHOLDS.consumerLag} events, ingest backlog ${THRESHOLDS.ingestBacklog} ms`,
    );
    printTable(['rule', 'threshold', 'detected after threshold', 'goal', ''], rows);
  } finally {
    disarm();
    await cleanup();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench monitor failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
