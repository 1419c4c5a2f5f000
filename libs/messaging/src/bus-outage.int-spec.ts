import { jetstream } from '@nats-io/jetstream';
import { DataSource } from 'typeorm';
import { DomainEvent, newEvent } from '@edm/events';
import { EventStore, uuidv7 } from '@edm/event-store';
import { createDataSource, runMigrations } from '@edm/persistence';
import {
  createTestEnvironment,
  eventually,
  PrivateNats,
  startPrivateNats,
  TestEnvironment,
} from '@edm/testing';
import { JetStreamService } from './jetstream.service';
import { OutboxRelay } from './outbox-relay';

/**
 * The bus stopped under a publisher and the outbox relay (a NATS server of this suite's own):
 * publishing fails at once instead of waiting out its timeout, the relay stands by without taking
 * the lock or filling the log, and once the bus is back every event reaches the stream once.
 */
describe('the bus down and back (Postgres + a private NATS)', () => {
  let env: TestEnvironment;
  let nats: PrivateNats;
  let js: JetStreamService;
  let db: DataSource;
  let store: EventStore;
  let relay: OutboxRelay;
  const logs: string[] = [];

  const append = async (n: number) => {
    for (let i = 0; i < n; i += 1) {
      const taskId = uuidv7();
      await db.transaction((tx) =>
        store.append(
          tx,
          [
            {
              streamId: `task-${taskId}`,
              expectedVersion: 'no_stream',
              events: [newEvent('TaskPaused', { taskId })],
            },
          ],
          { correlationId: 'outage', causationId: null },
        ),
      );
    }
  };
  const streamIds = async (): Promise<string[]> => {
    const ids: string[] = [];
    if ((await js.streamInfo()).state.messages === 0) return ids;
    const messages = await (await jetstream(js.connection).consumers.get(env.stream)).consume();
    for await (const m of messages) {
      ids.push((m.json() as DomainEvent).id);
      if (m.info.pending === 0) break;
    }
    return ids;
  };

  beforeAll(async () => {
    [env, nats] = await Promise.all([createTestEnvironment('bus_outage'), startPrivateNats()]);
    db = createDataSource({ url: env.databaseUrl, poolSize: 4, applicationName: 'test' });
    await db.initialize();
    await runMigrations(db);
    store = new EventStore(db);
    js = new JetStreamService({
      servers: nats.url,
      stream: env.stream,
      subjectPrefix: env.subjectPrefix,
      duplicateWindowMs: 120_000,
      name: 'outage-test',
      log: (_level, message) => logs.push(message),
    });
    await js.connect();
    relay = new OutboxRelay(db, store, js, {
      databaseUrl: env.databaseUrl,
      name: 'outage',
      batchSize: 50,
      pollIntervalMs: 50,
      log: (_level, message) => logs.push(message),
    });
  });

  afterAll(async () => {
    await relay?.stop();
    await js?.drain();
    await db?.destroy();
    await nats?.destroy();
    await env?.dispose();
  });

  it('publishes while the bus is up', async () => {
    relay.start();
    await append(20);
    await eventually('relayed', async () => (await relay.lag()) === 0);
    expect(relay.role).toBe('active');
  });

  it('fails a publish at once while the bus is down, and the relay stands by, logging the outage once', async () => {
    await nats.stop();
    await eventually('the client sees the bus gone', async () => !js.isConnected());
    await expect(
      js.publishMany([{ subject: js.subjectOfType('TaskPaused'), payload: '{}', msgId: uuidv7() }], 60_000),
    ).rejects.toThrow('NATS is not connected');

    await append(120);
    await eventually('the relay stood by', async () => relay.role === 'standby');
    // Ten times the poll interval and more, without the bus.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(relay.role).toBe('standby');
    expect(await relay.lag()).toBe(120);
    expect(logs.filter((m) => m === 'outbox relay interrupted').length).toBeLessThanOrEqual(1);
    expect(logs.filter((m) => m === 'outbox relay active').length).toBe(1);
  });

  it('once the bus is back, publishes everything committed meanwhile, each event once', async () => {
    await nats.start();
    await eventually('relayed after the outage', async () => (await relay.lag()) === 0, 30_000);
    const ids = await streamIds();
    const expected: string[] = (await db.query(`SELECT id FROM events`)).map((r: { id: string }) => r.id);
    expect(ids).toHaveLength(140);
    expect(new Set(ids)).toEqual(new Set(expected));
  });
});
