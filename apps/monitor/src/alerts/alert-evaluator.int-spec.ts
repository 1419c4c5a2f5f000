import { DataSource } from 'typeorm';
import { loadConfig } from '@edm/config';
import { EventStore, uuidv7 } from '@edm/event-store';
import { JetStreamService } from '@edm/messaging';
import { JsonLogger, Metrics } from '@edm/observability';
import { createDataSource, runMigrations } from '@edm/persistence';
import { allProjections } from '@edm/read-models';
import {
  createTestEnvironment,
  eventually,
  PrivateNats,
  startPrivateNats,
  TestEnvironment,
} from '@edm/testing';
import { AlertEvaluator } from './alert-evaluator.service';

/**
 * The evaluator with its bus stopped (a NATS server of this suite's own): it goes on evaluating
 * from Postgres, raising and resolving relay lag, while consumer lag, which only the bus can tell,
 * is left as it stood until the bus answers again.
 */
describe('AlertEvaluator with the bus down (Postgres + a private NATS)', () => {
  let env: TestEnvironment;
  let nats: PrivateNats;
  let db: DataSource;
  let js: JetStreamService;
  let evaluator: AlertEvaluator;

  const firing = async () =>
    (await db.query(`SELECT kind, subject FROM alerts WHERE status = 'firing' ORDER BY kind, subject`)).map(
      (r: { kind: string; subject: string }) => `${r.kind} ${r.subject}`,
    );
  const relayCaughtUp = () =>
    db.query(
      `INSERT INTO relay_checkpoints (name, position) SELECT 'main', max(global_position) FROM events
       ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position`,
    );

  beforeAll(async () => {
    [env, nats] = await Promise.all([createTestEnvironment('alert_evaluator'), startPrivateNats()]);
    db = createDataSource({ url: env.databaseUrl, poolSize: 4, applicationName: 'test' });
    await db.initialize();
    await runMigrations(db);
    const store = new EventStore(db);
    store.register(...allProjections);
    js = new JetStreamService({
      servers: nats.url,
      stream: env.stream,
      subjectPrefix: env.subjectPrefix,
      duplicateWindowMs: 120_000,
      name: 'evaluator-test',
      log: () => undefined,
    });
    await js.connect();
    const config = loadConfig({
      ...env.env,
      NATS_URL: nats.url,
      MONITOR_RELAY_LAG_EVENTS: '3',
      MONITOR_CONSUMER_LAG_EVENTS: '3',
    });
    evaluator = new AlertEvaluator(
      db,
      store,
      js,
      new JsonLogger('test', 'silent'),
      config,
      new Metrics('test'),
    );
  });

  afterAll(async () => {
    await js?.drain();
    await db?.destroy();
    await nats?.destroy();
    await env?.dispose();
  });

  it('raises relay lag and consumer lag while the bus is up', async () => {
    await js.ensureConsumer({ durable: 'webhook-ingest', filterSubject: js.subjectsOfAggregate('task') });
    await js.publishMany(
      Array.from({ length: 5 }, () => ({
        subject: js.subjectOfType('TaskPaused'),
        payload: '{}',
        msgId: uuidv7(),
      })),
    );
    await db.query(
      `INSERT INTO events (id, stream_id, version, type, data, metadata, occurred_at)
       SELECT gen_random_uuid(), 'lag-' || g, 1, 'Test', '{}', '{}', now() FROM generate_series(1, 5) g`,
    );
    await evaluator.evaluate();
    expect(await firing()).toEqual(['consumer-lag consumer:webhook-ingest', 'relay-lag system']);
  });

  it('evaluates from Postgres alone while the bus is down, and leaves consumer lag as it stood', async () => {
    await nats.stop();
    await eventually('the client sees the bus gone', async () => !js.isConnected());
    await relayCaughtUp();
    expect(await evaluator.evaluate()).toEqual({ raised: [], resolved: ['relay-lag system'] });
    await db.query(
      `INSERT INTO events (id, stream_id, version, type, data, metadata, occurred_at)
       SELECT gen_random_uuid(), 'lag2-' || g, 1, 'Test', '{}', '{}', now() FROM generate_series(1, 5) g`,
    );
    expect(await evaluator.evaluate()).toEqual({ raised: ['relay-lag system'], resolved: [] });
    expect(await firing()).toEqual(['consumer-lag consumer:webhook-ingest', 'relay-lag system']);
  }, 20_000);

  it('resolves consumer lag once the bus answers again and the consumer has caught up', async () => {
    await nats.start();
    await eventually('the client reconnected', async () => js.isConnected(), 30_000);
    await js.retireConsumers('webhook-ingest', []);
    await relayCaughtUp();
    await evaluator.evaluate();
    expect(await firing()).toEqual([]);
  });
});
