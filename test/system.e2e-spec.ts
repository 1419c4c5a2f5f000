import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { JetStreamManager, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Client } from 'pg';
import { BUS_SUBSCRIPTIONS } from '@edm/platform';
import { promqlMetricNames, PROMETHEUS_SERIES, yamlDocument } from './deploy/deploy-helpers';
import {
  AppName,
  createTestEnvironment,
  eventually,
  ServiceProcess,
  startService,
  TestEnvironment,
} from '@edm/testing';

const APPS: AppName[] = ['api', 'dispatcher', 'webhook-ingest', 'monitor'];
const CONSUMERS = Object.values(BUS_SUBSCRIPTIONS).flatMap((subscriptions) =>
  subscriptions.map((s) => s.durable),
);

/** The four services as processes on one database and one stream: boot, health, the bus, failover. */
describe('the system (e2e)', () => {
  let env: TestEnvironment;
  const running = new Map<AppName, ServiceProcess>();

  /** A JetStream manager on the suite's NATS, closed whatever `use` does. */
  const withJetStream = async <T>(use: (jsm: JetStreamManager) => Promise<T>): Promise<T> => {
    const nc = await connect({ servers: env.natsUrl });
    try {
      return await use(await jetstreamManager(nc));
    } finally {
      await nc.close();
    }
  };

  const relayActive = async (service: ServiceProcess) => {
    const text = await (await fetch(`${service.url}/metrics`)).text();
    return /^edm_relay_active\{[^}]*\} 1$/m.test(text);
  };

  beforeAll(async () => {
    env = await createTestEnvironment('system');
    // Started together: migrations and stream provisioning race and must all succeed.
    const started = await Promise.all(
      APPS.map((app) => startService(app, { ...env.env, RELAY_POLL_INTERVAL_MS: '200' })),
    );
    APPS.forEach((app, i) => running.set(app, started[i]));
  }, 90_000);

  afterAll(async () => {
    const codes = await Promise.all([...running.values()].map((s) => s.stop()));
    expect(codes.every((code) => code === 0)).toBe(true);
    await env.dispose();
  });

  it('boots every service ready, each with its durable consumer on the stream', async () => {
    for (const service of running.values()) {
      const ready = (await (await fetch(`${service.url}/health/ready`)).json()) as { details: unknown };
      expect(ready.details).toMatchObject({
        postgres: { status: 'up' },
        nats: { status: 'up' },
        stream: { status: 'up' },
      });
      expect((await fetch(`${service.url}/health/live`)).status).toBe(200);
    }
    await withJetStream(async (jsm) => {
      for (const durable of CONSUMERS)
        expect((await jsm.consumers.info(env.stream, durable)).config.durable_name).toBe(durable);
    });
  });

  it('runs one active relay among four processes, and a command reaches every consumer through it', async () => {
    const active = await Promise.all([...running.values()].map(relayActive));
    expect(active.filter(Boolean)).toHaveLength(1);

    const key = readFileSync(join(env.home, 'admin-key'), 'utf8').trim();
    const api = running.get('api')!;
    const post = (path: string, body: unknown) =>
      fetch(`${api.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    await post('/api/v1/contacts', { contacts: [{ email: 'bus@example.com', tags: ['bus'] }] });
    expect(
      (await post('/api/v1/tasks', { name: 'bus', subject: 's', text: 't', recipients: { tags: ['bus'] } }))
        .status,
    ).toBe(201);

    const db = new Client({ connectionString: env.databaseUrl });
    await db.connect();
    const { rows } = await db.query(`SELECT count(*)::int AS n FROM events`).finally(() => db.end());
    await withJetStream(async (jsm) => {
      // Every event on the stream, and every consumer caught up with what it takes: all of it, or
      // (webhook-ingest) the sends alone.
      await eventually('every consumer acknowledged every event it takes', async () => {
        const stream = await jsm.streams.info(env.stream);
        const infos = await Promise.all(CONSUMERS.map((d) => jsm.consumers.info(env.stream, d)));
        return (
          stream.state.last_seq >= rows[0].n &&
          infos.every((i) => i.num_pending === 0 && i.num_ack_pending === 0)
        );
      });
      const filters = await Promise.all(
        CONSUMERS.map(async (d) => [
          d,
          (await jsm.consumers.info(env.stream, d)).config.filter_subject || null,
        ]),
      );
      // Each takes only what its service acts on: the dispatcher's wake-ups (never the lifecycle
      // events of every mail), ingest the sends, the monitor everything.
      expect(Object.fromEntries(filters)).toEqual({
        'dispatcher-task': `${env.subjectPrefix}.task.>`,
        'dispatcher-service': `${env.subjectPrefix}.service.>`,
        'dispatcher-released': `${env.subjectPrefix}.subtask.released`,
        'dispatcher-retry': `${env.subjectPrefix}.subtask.retry-scheduled`,
        'webhook-ingest': `${env.subjectPrefix}.subtask.sent`,
        monitor: `${env.subjectPrefix}.>`,
      });
      expect((await jsm.streams.info(env.stream)).state.messages).toBe(rows[0].n);
    });
  });

  it('exports every metric the Grafana dashboard and the Prometheus rules query', async () => {
    const exported = new Set<string>();
    for (const service of running.values()) {
      const text = await (await fetch(`${service.url}/metrics`)).text();
      for (const m of text.matchAll(/^# HELP (\S+)/gm)) exported.add(m[1]);
    }
    const expressions = [
      ...readFileSync(
        join(__dirname, '../deploy/observability/grafana/dashboards/edm.json'),
        'utf8',
      ).matchAll(/"expr"\s*:\s*"((?:[^"\\]|\\.)*)"/g),
    ].map((m) => JSON.parse(`"${m[1]}"`) as string);
    const rules = yamlDocument('deploy/observability/prometheus-rules.yml') as {
      groups: { rules: { expr: string }[] }[];
    };
    for (const group of rules.groups) for (const rule of group.rules) expressions.push(String(rule.expr));
    const queried = new Set(
      expressions.flatMap((e) => promqlMetricNames(e)).filter((n) => !PROMETHEUS_SERIES.has(n)),
    );
    expect(queried.size).toBeGreaterThan(5);
    const missing = [...queried].filter((name) => !exported.has(name.replace(/_(bucket|sum|count)$/, '')));
    expect(missing).toEqual([]);
  });

  it('hands the relay to another process when the active one is killed with SIGKILL', async () => {
    const entries = [...running.entries()];
    const flags = await Promise.all(entries.map(([, s]) => relayActive(s)));
    const [victimApp, victim] = entries[flags.indexOf(true)];
    await victim.kill();
    running.delete(victimApp);
    await eventually(
      'another relay active',
      async () => (await Promise.all([...running.values()].map(relayActive))).filter(Boolean).length === 1,
      30_000,
      200,
    );
    running.set(victimApp, await startService(victimApp, { ...env.env, RELAY_POLL_INTERVAL_MS: '200' }));
    expect((await Promise.all([...running.values()].map(relayActive))).filter(Boolean)).toHaveLength(1);
  });
});
