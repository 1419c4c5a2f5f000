import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { EVENT_MAX_BYTES, newEvent } from '@edm/events';
import { createDataSource, runMigrations } from '@edm/persistence';
import { createTestEnvironment, eventually, TestEnvironment } from '@edm/testing';
import { ConcurrencyError, EventTooLargeError } from './expected-version';
import { EVENTS_APPENDED_CHANNEL, EventStore, START } from './event-store';
import { uuidv7 } from './uuid-v7';

const meta = { correlationId: 'test', causationId: null };
const paused = (taskId: string) => newEvent('TaskPaused', { taskId });

describe('EventStore (Postgres)', () => {
  let env: TestEnvironment;
  let db: DataSource;
  let store: EventStore;

  beforeAll(async () => {
    env = await createTestEnvironment('event-store');
    db = createDataSource({ url: env.databaseUrl, poolSize: 12, applicationName: 'test' });
    await db.initialize();
    await runMigrations(db);
    store = new EventStore(db);
  });

  afterAll(async () => {
    await db.destroy();
    await env.dispose();
  });

  it('appends with versions and reads the stream back in order', async () => {
    const taskId = uuidv7();
    const stream = `task-${taskId}`;
    const first = await store.appendToStream(stream, 'no_stream', [paused(taskId), paused(taskId)], meta);
    expect(first.map((e) => e.version)).toEqual([1, 2]);
    await store.appendToStream(stream, 2, [newEvent('TaskResumed', { taskId })], meta);
    const read = await store.readStream(stream);
    expect(read.map((e) => [e.version, e.type])).toEqual([
      [1, 'TaskPaused'],
      [2, 'TaskPaused'],
      [3, 'TaskResumed'],
    ]);
    expect(read[2].metadata).toEqual(meta);
  });

  it.each([
    ['the stream already exists', 'no_stream' as const],
    ['the stream moved on', 1],
    ['the stream is not that far', 7],
  ])('rejects an append when %s', async (_, expected) => {
    const taskId = uuidv7();
    const stream = `task-${taskId}`;
    await store.appendToStream(stream, 'no_stream', [paused(taskId), paused(taskId)], meta);
    await expect(store.appendToStream(stream, expected, [paused(taskId)], meta)).rejects.toBeInstanceOf(
      ConcurrencyError,
    );
    expect(await store.readStream(stream)).toHaveLength(2);
  });

  it('refuses an event too large for the bus to carry, counting bytes, and stores nothing of its call', async () => {
    const templateId = uuidv7();
    const template = (html: string) =>
      newEvent('TemplateCreated', {
        templateId,
        accountId: uuidv7(),
        name: 't',
        subject: 's',
        html,
        text: null,
      });
    const stream = `template-${templateId}`;
    // 400,000 characters of two bytes each: under the limit counted in characters, over it in bytes.
    const attempt = store.appendToStream(
      stream,
      'no_stream',
      [paused(uuidv7()), template('é'.repeat(400_000))],
      meta,
    );
    await expect(attempt).rejects.toBeInstanceOf(EventTooLargeError);
    await expect(attempt).rejects.toMatchObject({ type: 'TemplateCreated', maxBytes: EVENT_MAX_BYTES });
    expect(await store.readStream(stream)).toEqual([]);
    const fits = await store.appendToStream(
      stream,
      'no_stream',
      [template('a'.repeat(EVENT_MAX_BYTES - 4_096))],
      meta,
    );
    expect(fits.map((e) => e.version)).toEqual([1]);
  });

  it('lets exactly one of many racing writers win the same expected version', async () => {
    const taskId = uuidv7();
    const stream = `task-${taskId}`;
    await store.appendToStream(stream, 'no_stream', [paused(taskId)], meta);
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () => store.appendToStream(stream, 1, [paused(taskId)], meta)),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(
      results.filter((r) => r.status === 'rejected' && r.reason instanceof ConcurrencyError),
    ).toHaveLength(9);
  });

  it('appends to several streams atomically: one conflict rolls back all', async () => {
    const [a, b] = [uuidv7(), uuidv7()];
    await store.appendToStream(`task-${b}`, 'no_stream', [paused(b)], meta);
    await expect(
      db.transaction((tx) =>
        store.append(
          tx,
          [
            { streamId: `task-${a}`, expectedVersion: 'no_stream', events: [paused(a)] },
            { streamId: `task-${b}`, expectedVersion: 'no_stream', events: [paused(b)] },
          ],
          meta,
        ),
      ),
    ).rejects.toBeInstanceOf(ConcurrencyError);
    expect(await store.readStream(`task-${a}`)).toHaveLength(0);
  });

  it('continues a stream that comes back later in the same call, each part with its own metadata', async () => {
    const taskId = uuidv7();
    const stream = `task-${taskId}`;
    await store.appendToStream(stream, 'no_stream', [paused(taskId)], meta);
    const cause = (id: string) => ({ correlationId: id, causationId: null });
    await db.transaction((tx) =>
      store.append(
        tx,
        [
          { streamId: stream, expectedVersion: 1, events: [paused(taskId)], metadata: cause('first') },
          { streamId: `task-${uuidv7()}`, expectedVersion: 'no_stream', events: [paused(taskId)] },
          { streamId: stream, expectedVersion: 2, events: [paused(taskId)], metadata: cause('second') },
          { streamId: stream, expectedVersion: 'any', events: [paused(taskId)] },
        ],
        meta,
      ),
    );
    expect((await store.readStream(stream)).map((e) => [e.version, e.metadata.correlationId])).toEqual([
      [1, 'test'],
      [2, 'first'],
      [3, 'second'],
      [4, 'test'],
    ]);
    await expect(
      db.transaction((tx) =>
        store.append(
          tx,
          [
            { streamId: stream, expectedVersion: 4, events: [paused(taskId)] },
            { streamId: stream, expectedVersion: 4, events: [paused(taskId)] },
          ],
          meta,
        ),
      ),
    ).rejects.toBeInstanceOf(ConcurrencyError);
  });

  it('never reads past a transaction that is still in flight', async () => {
    const all = async () => (await store.readAll(START, 100_000)).map((g) => g.event.id);
    const before = new Set(await all());
    const slow = db.createQueryRunner();
    await slow.connect();
    await slow.startTransaction();
    const [late] = await store.append(
      slow.manager,
      [{ streamId: `task-${uuidv7()}`, expectedVersion: 'no_stream', events: [paused(uuidv7())] }],
      meta,
    );
    const [early] = await store.appendToStream(`task-${uuidv7()}`, 'no_stream', [paused(uuidv7())], meta);

    // The later-numbered event is committed, but the older transaction is open: neither is read.
    const whileOpen = (await all()).filter((id) => !before.has(id));
    expect(whileOpen).not.toContain(early.id);
    expect(whileOpen).not.toContain(late.id);

    await slow.commitTransaction();
    await slow.release();
    // The snapshot horizon is cluster-wide: other suites' open transactions may delay (never skip) them.
    const after = await eventually('both events visible', async () => {
      const ids = (await all()).filter((id) => !before.has(id));
      return ids.includes(late.id) && ids.includes(early.id) ? ids : undefined;
    });
    expect(after.indexOf(late.id)).toBeLessThan(after.indexOf(early.id));
  });

  it('reads the same events as envelope JSON, in the same order, with the subject part of provider events', async () => {
    const taskId = uuidv7();
    const mail = newEvent('MailEventRecorded', {
      mailEventId: uuidv7(),
      eventLogId: uuidv7(),
      provider: 'sendgrid',
      serviceId: null,
      type: 'soft_bounce',
      rawType: 'deferred "quoted" \\ back\u2028slash é 😀',
      matchStatus: 'unmatched',
      matchStrategy: null,
      subTaskId: null,
      taskId: null,
      occurredAt: new Date().toISOString(),
    });
    await store.appendToStream(`task-${taskId}`, 'no_stream', [paused(taskId)], {
      ...meta,
      actor: 'a "quoted" actor',
    });
    await store.appendToStream(`mail-${uuidv7()}`, 'no_stream', [mail], meta);
    const { type: _type, ...record } = mail.data;
    const batch = newEvent('MailEventsRecorded', {
      type: 'click',
      events: [record, { ...record, mailEventId: uuidv7() }],
    });
    await store.appendToStream(`mail-events-${uuidv7()}`, 'no_stream', [batch], meta);
    await eventually('both readable', async () =>
      (await store.readAll(START, 100_000)).some((g) => g.event.type === 'MailEventsRecorded'),
    );
    const parsed = await store.readAll(START, 100_000);
    const json = await store.readAllJson(START, 100_000);
    expect(json.map((j) => j.checkpoint)).toEqual(parsed.map((p) => p.checkpoint));
    expect(json.map((j) => JSON.parse(j.json))).toEqual(parsed.map((p) => p.event));
    expect(json.map((j) => [j.id, j.type])).toEqual(parsed.map((p) => [p.event.id, p.event.type]));
    const recorded = json.find((j) => j.type === 'MailEventRecorded')!;
    expect(recorded.mailEventType).toBe('soft_bounce');
    expect(JSON.parse(recorded.json).data.rawType).toBe(mail.data.rawType);
    expect(json.find((j) => j.type === 'MailEventsRecorded')!.mailEventType).toBe('click');
    expect(
      json
        .filter((j) => j.type !== 'MailEventRecorded' && j.type !== 'MailEventsRecorded')
        .every((j) => j.mailEventType === null),
    ).toBe(true);
    const mid = json[Math.floor(json.length / 2)].checkpoint;
    expect((await store.readAllJson(mid, 100_000)).map((j) => j.id)).toEqual(
      (await store.readAll(mid, 100_000)).map((p) => p.event.id),
    );
  });

  it('reads from a checkpoint without repeating or skipping', async () => {
    const events = await store.readAll(START, 100_000);
    const mid = events[Math.floor(events.length / 2)].checkpoint;
    const rest = await store.readAll(mid, 100_000);
    expect(rest.map((g) => g.event.id).slice(0, events.length - Math.floor(events.length / 2) - 1)).toEqual(
      events.slice(Math.floor(events.length / 2) + 1).map((g) => g.event.id),
    );
  });

  describe('telling the relay', () => {
    let listener: Client;
    let heard = 0;
    const quiet = () => new Promise((resolve) => setTimeout(resolve, 250));
    const appendIn = (manager = db.manager) =>
      store.append(
        manager,
        [{ streamId: `task-${uuidv7()}`, expectedVersion: 'no_stream', events: [paused(uuidv7())] }],
        meta,
      );

    beforeAll(async () => {
      listener = new Client({ connectionString: env.databaseUrl });
      await listener.connect();
      listener.on('notification', (n) => {
        if (n.channel === EVENTS_APPENDED_CHANNEL) heard += 1;
      });
      await listener.query(`LISTEN ${EVENTS_APPENDED_CHANNEL}`);
    });

    afterAll(() => listener.end());

    beforeEach(async () => {
      await quiet();
      heard = 0;
    });

    it('leaves the events table without a trigger: a NOTIFY inside the appending transaction would serialise every commit in the cluster', async () => {
      const { rows } = await listener.query(
        `SELECT tgname FROM pg_trigger WHERE tgrelid = 'events'::regclass AND NOT tgisinternal`,
      );
      expect(rows).toEqual([]);
    });

    it('notifies once the appending transaction committed, not before', async () => {
      const runner = db.createQueryRunner();
      await runner.connect();
      try {
        await runner.startTransaction();
        await appendIn(runner.manager);
        await appendIn(runner.manager);
        await quiet();
        expect(heard).toBe(0);
        await runner.commitTransaction();
      } finally {
        await runner.release();
      }
      await eventually('a notification', async () => heard > 0 || undefined);
      await quiet();
      expect(heard).toBe(1);
    });

    it('notifies after the outermost commit only, not when a nested transaction commits', async () => {
      await db.transaction(async (tx) => {
        await tx.transaction((inner) => appendIn(inner));
        await quiet();
        expect(heard).toBe(0);
      });
      await eventually('a notification', async () => heard > 0 || undefined);
    });

    it('never notifies for a transaction rolled back', async () => {
      await expect(
        db.transaction(async (tx) => {
          await appendIn(tx);
          throw new Error('rolled back');
        }),
      ).rejects.toThrow('rolled back');
      await quiet();
      expect(heard).toBe(0);
    });

    it('notifies at once for an append outside a transaction', async () => {
      await appendIn(db.manager);
      await eventually('a notification', async () => heard > 0 || undefined);
    });

    it('notifies a burst of commits at least once and at most once per commit', async () => {
      await Promise.all(Array.from({ length: 20 }, () => db.transaction((tx) => appendIn(tx))));
      await eventually('a notification', async () => heard > 0 || undefined);
      await quiet();
      expect(heard).toBeLessThanOrEqual(20);
    });
  });
});
