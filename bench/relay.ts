/**
 * Bench: the outbox relay (Postgres events table -> JetStream) against raw pipelined publishes.
 *
 * Run (with Postgres on 127.0.0.1:5432 and NATS JetStream on 127.0.0.1:4222; no build needed):
 *
 *   node -r @swc-node/register bench/relay.ts
 *
 * Setup (not timed): a fresh test environment (own database, stream and subject prefix), the
 * schema by createDataSource + runMigrations, then 50,000 TaskPaused events on 50,000 streams,
 * appended with EventStore.append in 50 transactions of 1,000.
 * Figure: a JetStreamService connected to the environment's stream and an OutboxRelay with the
 * production defaults (batch 1,000, poll 500 ms); timed from relay.start() until streamInfo says
 * the stream holds 50,000 messages (polled every 20 ms).
 * Baseline: the same 50,000 JSON bodies (read back from the events table as the relay sends them,
 * not timed), published with the v3 client straight into a second stream `<stream>_RAW` (subjects
 * `<prefix>-raw.>`, same settings), msgID = event id, in windows of 1,000 unawaited publishes whose
 * acks are then awaited; timed from the first publish to the last ack, checked by streamInfo.
 *
 * Prints events/s of both, their ratio and the goal (>= 0.5x baseline). A miss is printed, never
 * an exit code. Only 127.0.0.1 traffic; bounded by a watchdog; cleans up (drops the database,
 * deletes both streams).
 */
import { jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { nanos, NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { DataSource } from 'typeorm';
import { DomainEvent, newEvent, subjectFor } from '@edm/events';
import { EventStore, START, uuidv7 } from '@edm/event-store';
import { JetStreamService, OutboxRelay } from '@edm/messaging';
import { createDataSource, runMigrations } from '@edm/persistence';
import { createTestEnvironment, TestEnvironment } from '@edm/testing';
import { fmt, log, machine, now, printComparison, rate, waitFor, watchdog } from './bench-util';

const EVENTS = 50_000;
const PER_TRANSACTION = 1_000;
const WINDOW = 1_000;
const RELAY_BATCH_SIZE = 1_000; // RELAY_BATCH_SIZE default
const RELAY_POLL_INTERVAL_MS = 500; // RELAY_POLL_INTERVAL_MS default
const DUPLICATE_WINDOW_MS = 300_000; // NATS_DUPLICATE_WINDOW_MS default
const GOAL = 0.5;
const TIME_LIMIT_MS = 10 * 60_000;
const PUBLISH_TIMEOUT_MS = 240_000;

const quiet = () => undefined;
let env: TestEnvironment | undefined;
let db: DataSource | undefined;
let service: JetStreamService | undefined;
let relay: OutboxRelay | undefined;
let nc: NatsConnection | undefined;
let rawStream: string | undefined;

async function cleanup(): Promise<void> {
  await relay?.stop().catch(() => undefined);
  relay = undefined;
  await service?.drain().catch(() => undefined);
  service = undefined;
  if (nc && rawStream) {
    const jsm = await jetstreamManager(nc).catch(() => undefined);
    await jsm?.streams.delete(rawStream).catch(() => undefined);
  }
  rawStream = undefined;
  await nc?.close().catch(() => undefined);
  nc = undefined;
  if (db?.isInitialized) await db.destroy().catch(() => undefined);
  db = undefined;
  await env?.dispose().catch(() => undefined);
  env = undefined;
}

async function main(): Promise<void> {
  const disarm = watchdog(TIME_LIMIT_MS, cleanup);
  try {
    log(`bench relay: ${machine()}`);
    env = await createTestEnvironment('bench_relay');
    log(`test environment ${env.id}: stream ${env.stream}, subjects ${env.subjectPrefix}.>`);
    db = createDataSource({ url: env.databaseUrl, poolSize: 10, applicationName: 'bench-relay' });
    await db.initialize();
    await runMigrations(db);
    const [{ version }] = await db.query(`SELECT current_setting('server_version') AS version`);
    const store = new EventStore(db);

    // Setup, not timed.
    let started = now();
    const meta = { correlationId: uuidv7(), causationId: null, actor: 'bench' };
    for (let done = 0; done < EVENTS; done += PER_TRANSACTION) {
      const appends = Array.from({ length: Math.min(PER_TRANSACTION, EVENTS - done) }, () => {
        const taskId = uuidv7();
        return {
          streamId: `task-${taskId}`,
          expectedVersion: 'no_stream' as const,
          events: [newEvent('TaskPaused', { taskId })],
        };
      });
      await db.transaction((tx) => store.append(tx, appends, meta));
    }
    const [{ count }] = await db.query(`SELECT count(*)::int AS count FROM events`);
    if (count !== EVENTS) throw new Error(`events holds ${count} rows, expected ${EVENTS}`);
    log(
      `appended ${EVENTS.toLocaleString('en-US')} TaskPaused events on ${EVENTS.toLocaleString('en-US')} streams in ${((now() - started) / 1_000).toFixed(1)} s (not timed)`,
    );

    // Figure: the outbox relay.
    service = new JetStreamService({
      servers: env.natsUrl,
      stream: env.stream,
      subjectPrefix: env.subjectPrefix,
      duplicateWindowMs: DUPLICATE_WINDOW_MS,
      name: 'bench-relay',
      log: quiet,
    });
    await service.connect();
    const js = service;
    relay = new OutboxRelay(db, store, service, {
      databaseUrl: env.databaseUrl,
      name: 'bench',
      batchSize: RELAY_BATCH_SIZE,
      pollIntervalMs: RELAY_POLL_INTERVAL_MS,
      log: (level, message, fields) => {
        if (level !== 'info') log(`  relay ${level}: ${message} ${JSON.stringify(fields ?? {})}`);
      },
    });
    started = now();
    relay.start();
    await waitFor(
      'the relay to publish every event',
      async () => (await js.streamInfo()).state.messages >= EVENTS,
      PUBLISH_TIMEOUT_MS,
      20,
    );
    const relayMs = now() - started;
    await relay.stop();
    relay = undefined;
    const relayed = (await service.streamInfo()).state.messages;
    if (relayed !== EVENTS) throw new Error(`the stream holds ${relayed} messages, expected ${EVENTS}`);
    const relayRate = rate(EVENTS, relayMs);
    log(
      `outbox relay: ${EVENTS.toLocaleString('en-US')} events in ${(relayMs / 1_000).toFixed(2)} s = ${fmt(relayRate)} (batch ${RELAY_BATCH_SIZE}, one connection, pipelined per batch)`,
    );

    // Baseline: the same bodies, published raw. Read back as the relay sends them (not timed).
    const bodies: { id: string; subject: string; body: string }[] = [];
    const rawPrefix = `${env.subjectPrefix}-raw`;
    for (let after = START; bodies.length < EVENTS;) {
      const page = await store.readAll(after, 10_000);
      if (page.length === 0) break;
      for (const { event } of page) {
        bodies.push({
          id: event.id,
          subject: subjectFor(rawPrefix, event.type),
          body: JSON.stringify(event as DomainEvent),
        });
      }
      after = page[page.length - 1].checkpoint;
    }
    if (bodies.length !== EVENTS) throw new Error(`read back ${bodies.length} events, expected ${EVENTS}`);
    const conn = await connect({ servers: env.natsUrl, name: 'bench-relay-raw', timeout: 5_000 });
    nc = conn;
    const jsm = await jetstreamManager(conn, { timeout: 10_000 });
    rawStream = `${env.stream}_RAW`;
    await jsm.streams.add({
      name: rawStream,
      subjects: [`${rawPrefix}.>`],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      duplicate_window: nanos(DUPLICATE_WINDOW_MS),
      max_age: nanos(30 * 24 * 3_600_000),
      num_replicas: 1,
    });
    const raw = jetstream(conn, { timeout: 10_000 });
    started = now();
    for (let i = 0; i < bodies.length; i += WINDOW) {
      const acks = bodies.slice(i, i + WINDOW).map((m) => raw.publish(m.subject, m.body, { msgID: m.id }));
      const answers = await Promise.all(acks);
      if (answers.some((a) => a.duplicate)) throw new Error('a raw publish was taken as a duplicate');
    }
    const rawMs = now() - started;
    const published = (await jsm.streams.info(rawStream)).state.messages;
    if (published !== EVENTS) throw new Error(`${rawStream} holds ${published} messages, expected ${EVENTS}`);
    const rawRate = rate(EVENTS, rawMs);
    const bytes = bodies.reduce((sum, m) => sum + Buffer.byteLength(m.body), 0);
    log(
      `raw publishes: ${EVENTS.toLocaleString('en-US')} events in ${(rawMs / 1_000).toFixed(2)} s = ${fmt(rawRate)} (windows of ${WINDOW}, ${Math.round(bytes / EVENTS)} bytes/body)`,
    );

    log(`postgres ${version}, nats-server ${conn.info?.version ?? 'unknown'}`);
    printComparison([
      {
        figure: 'outbox relay, 50k events',
        measured: relayRate,
        baselineName: 'raw pipelined JetStream publish',
        baseline: rawRate,
        goal: GOAL,
      },
    ]);
  } finally {
    await cleanup();
    disarm();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench relay failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
