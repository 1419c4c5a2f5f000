import { jetstream } from '@nats-io/jetstream';
import { DataSource } from 'typeorm';
import { DomainEvent, newEvent } from '@edm/events';
import { EventStore, uuidv7 } from '@edm/event-store';
import { createDataSource, runMigrations } from '@edm/persistence';
import { createTestEnvironment, eventually, TestEnvironment } from '@edm/testing';
import { JetStreamService } from './jetstream.service';
import { OutboxRelay } from './outbox-relay';

const meta = { correlationId: 'relay-test', causationId: null };
const quiet = () => undefined;

describe('OutboxRelay (Postgres + JetStream)', () => {
  let env: TestEnvironment;
  let db: DataSource;
  let store: EventStore;
  const services: JetStreamService[] = [];
  const relays: OutboxRelay[] = [];

  const jetStream = async () => {
    const service = new JetStreamService({
      servers: env.natsUrl,
      stream: env.stream,
      subjectPrefix: env.subjectPrefix,
      duplicateWindowMs: 300_000,
      name: 'relay-test',
      log: quiet,
    });
    await service.connect();
    services.push(service);
    return service;
  };
  const relay = (js: JetStreamService) => {
    const r = new OutboxRelay(db, store, js, {
      databaseUrl: env.databaseUrl,
      name: 'main',
      batchSize: 200,
      pollIntervalMs: 100,
      log: quiet,
    });
    relays.push(r);
    return r;
  };

  /** Every message in the stream, by Nats-Msg-Id. */
  const streamIds = async (js: JetStreamService): Promise<string[]> => {
    const info = await js.streamInfo();
    const consumer = await jetstream(js.connection).consumers.get(env.stream);
    const ids: string[] = [];
    if (info.state.messages === 0) return ids;
    const messages = await consumer.consume();
    for await (const m of messages) {
      ids.push((m.json() as DomainEvent).id);
      if (m.info.pending === 0) break;
    }
    return ids;
  };

  const writeConcurrently = async (writers: number, perWriter: number) => {
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let i = 0; i < perWriter; i += 1) {
          await db.transaction(async (tx) => {
            const taskId = uuidv7();
            await store.append(
              tx,
              [
                {
                  streamId: `task-${taskId}`,
                  expectedVersion: 'no_stream',
                  events: [newEvent('TaskPaused', { taskId })],
                },
              ],
              meta,
            );
            // Hold some transactions open so that commits land out of order.
            if ((i + w) % 7 === 0) await new Promise((r) => setTimeout(r, 15));
          });
        }
      }),
    );
  };

  beforeAll(async () => {
    env = await createTestEnvironment('relay');
    db = createDataSource({ url: env.databaseUrl, poolSize: 20, applicationName: 'test' });
    await db.initialize();
    await runMigrations(db);
    store = new EventStore(db);
  });

  afterAll(async () => {
    await Promise.all(relays.map((r) => r.stop()));
    await Promise.all(services.map((s) => s.drain()));
    await db.destroy();
    await env.dispose();
  });

  it('publishes every event exactly once while many writers commit out of order; one relay active', async () => {
    const [js1, js2] = [await jetStream(), await jetStream()];
    const [a, b] = [relay(js1), relay(js2)];
    a.start();
    b.start();
    await writeConcurrently(12, 40);
    const expected: string[] = (await db.query(`SELECT id FROM events`)).map((r: { id: string }) => r.id);
    await eventually(
      'all events in the stream',
      async () => (await js1.streamInfo()).state.messages >= expected.length,
    );
    const ids = await streamIds(js1);
    expect(ids).toHaveLength(expected.length);
    expect(new Set(ids)).toEqual(new Set(expected));
    expect([a.role, b.role].sort()).toEqual(['active', 'standby']);
    expect(a.published + b.published).toBe(expected.length);
  });

  it('hands over to a standby when the active relay dies mid-batch, losing and duplicating nothing', async () => {
    const active = relays.find((r) => r.role === 'active')!;
    const standby = relays.find((r) => r.role === 'standby')!;
    const activeJs = services[relays.indexOf(active)];
    // The active relay's process "dies" after publishing part of a batch: its publishes start
    // failing and its database session is cut, as kill -9 would do.
    let sent = 0;
    const publishMany = activeJs.publishMany.bind(activeJs);
    activeJs.publishMany = async (messages, timeoutMs) => {
      const room = Math.max(0, 50 - sent);
      sent += messages.length;
      if (sent > 50) {
        // Part of the batch reaches the stream, then the process is gone.
        await publishMany(messages.slice(0, room), timeoutMs);
        await db
          .query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [
            `relay:main:${active.instanceId}`,
          ])
          .catch(() => undefined);
        throw new Error('process killed');
      }
      return publishMany(messages, timeoutMs);
    };
    await writeConcurrently(6, 50);
    const expected: string[] = (await db.query(`SELECT id FROM events`)).map((r: { id: string }) => r.id);
    await eventually(
      'the standby took over and caught up',
      async () =>
        standby.role === 'active' &&
        (await standby.lag()) === 0 &&
        (await activeJs.streamInfo()).state.messages >= expected.length,
      30_000,
    );
    await active.stop();
    const ids = await streamIds(standby === relays[0] ? services[0] : services[1]);
    expect(sent).toBeGreaterThan(50);
    expect(ids).toHaveLength(expected.length);
    expect(new Set(ids)).toEqual(new Set(expected));
  });
});
