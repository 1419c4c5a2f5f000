import { jetstreamManager } from '@nats-io/jetstream';
import { DataSource } from 'typeorm';
import { DomainEvent } from '@edm/events';
import { uuidv7 } from '@edm/event-store';
import { createDataSource, runMigrations } from '@edm/persistence';
import { createTestEnvironment, eventually, TestEnvironment } from '@edm/testing';
import { ack, nak, term } from './ack-decision';
import { handleOnce } from './idempotent-handler';
import { JetStreamService } from './jetstream.service';

const event = (taskId = uuidv7(), type: 'TaskPaused' | 'TaskResumed' = 'TaskPaused'): DomainEvent => ({
  id: uuidv7(),
  type,
  streamId: `task-${taskId}`,
  version: 1,
  occurredAt: new Date().toISOString(),
  data: { taskId },
  metadata: { correlationId: 'c', causationId: null },
});

describe('JetStreamService (NATS)', () => {
  let env: TestEnvironment;
  let js: JetStreamService;
  let db: DataSource;
  const logs: string[] = [];

  beforeAll(async () => {
    env = await createTestEnvironment('jetstream');
    js = new JetStreamService({
      servers: env.natsUrl,
      stream: env.stream,
      subjectPrefix: env.subjectPrefix,
      duplicateWindowMs: 120_000,
      name: 'jetstream-test',
      log: (_level, message, fields) => logs.push(`${message} ${JSON.stringify(fields)}`),
    });
    await js.connect();
    db = createDataSource({ url: env.databaseUrl, poolSize: 4, applicationName: 'test' });
    await db.initialize();
    await runMigrations(db);
  });

  afterAll(async () => {
    await js.drain();
    await db.destroy();
    await env.dispose();
  });

  it('provisions the stream idempotently and drops a republished event id', async () => {
    await js.ensureStream();
    await js.ensureStream();
    const e = event();
    const first = await js.publish(e);
    const again = await js.publish(e);
    expect(first.duplicate).toBe(false);
    expect(again).toEqual({ duplicate: true, seq: first.seq });
    expect(js.subject(e)).toBe(`${env.subjectPrefix}.task.paused`);
  });

  it('acks, redelivers after nak, stops after term, and terminates payloads that are not events', async () => {
    const seen = new Map<string, number>();
    const [okEvent, flaky, poison] = [event(), event(), event()];
    await js.consume(
      { durable: 'decisions', filterSubject: `${env.subjectPrefix}.task.>` },
      async (e, context) => {
        seen.set(e.id, (seen.get(e.id) ?? 0) + 1);
        if (e.id === flaky.id && context.deliveryCount < 3) return nak(50, 'not yet');
        if (e.id === poison.id) return term('can never succeed');
        return ack();
      },
    );
    for (const e of [okEvent, flaky, poison]) await js.publish(e);
    js.connection.publish(`${env.subjectPrefix}.task.garbage`, 'not json');
    await eventually('flaky succeeded on its third delivery', async () => seen.get(flaky.id) === 3);
    await eventually('garbage terminated', async () => (js.stats.get('decisions')?.termed ?? 0) >= 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(seen.get(okEvent.id)).toBe(1);
    expect(seen.get(poison.id)).toBe(1);
    expect(js.stats.get('decisions')).toMatchObject({ naked: 2, termed: 2 });
    expect(logs.some((l) => l.includes('message terminated') && l.includes('can never succeed'))).toBe(true);
  });

  it('runs an idempotent handler once per consumer and event, even when redelivered', async () => {
    await db.query(`CREATE TABLE effects (n integer)`);
    const e = event();
    const run = () => handleOnce(db, 'counter', e, (tx) => tx.query(`INSERT INTO effects VALUES (1)`));
    expect(await Promise.all([run(), run(), run()])).toEqual(expect.arrayContaining([true, false, false]));
    expect((await db.query(`SELECT count(*)::int AS n FROM effects`))[0].n).toBe(1);
    expect(await handleOnce(db, 'another-consumer', e, async () => undefined)).toBe(true);
  });

  it('narrows an existing consumer to a new subject filter, so it no longer receives the rest', async () => {
    const everything = { durable: 'narrowed' };
    await js.ensureConsumer(everything);
    const [paused, resumed] = [event(), event(uuidv7(), 'TaskResumed')];
    await js.publish(paused);
    const sent = await js.publish(resumed);
    expect(await js.consumerPending('narrowed')).toBeGreaterThanOrEqual(2);

    const onlyResumed = { durable: 'narrowed', filterSubject: js.subjectOfType('TaskResumed') };
    await js.ensureConsumer(onlyResumed);
    await js.ensureConsumer(onlyResumed); // unchanged: updated in place, not recreated again
    expect(logs.filter((l) => l.includes('subject filter changed') && l.includes('"narrowed"'))).toHaveLength(
      1,
    );
    const seen: { id: string; seq: number }[] = [];
    await js.consume(onlyResumed, async (e, context) => {
      seen.push({ id: e.id, seq: context.streamSequence });
      return ack();
    });
    await eventually('the resumed events delivered', async () => seen.some((s) => s.id === resumed.id));
    await js.publish(event());
    await new Promise((r) => setTimeout(r, 300));
    expect(seen.some((s) => s.id === paused.id)).toBe(false);
    expect(seen.find((s) => s.id === resumed.id)?.seq).toBe(sent.seq);
    expect(await js.consumerPending('narrowed')).toBe(0);
  });

  it('publishes a batch pipelined: sequences in order, a repeated id is a duplicate, a subject outside the stream fails', async () => {
    const events = Array.from({ length: 300 }, () => event());
    const message = (e: DomainEvent) => ({ subject: js.subject(e), payload: JSON.stringify(e), msgId: e.id });
    const first = await js.publishMany(events.map(message));
    expect(first.every((a) => !a.duplicate)).toBe(true);
    expect(first.map((a) => a.seq)).toEqual(first.map((_, i) => first[0].seq + i));
    const again = await js.publishMany(events.slice(0, 2).map(message));
    expect(again).toEqual([
      { duplicate: true, seq: first[0].seq },
      { duplicate: true, seq: first[1].seq },
    ]);
    await expect(
      js.publishMany([{ subject: `nowhere-${uuidv7()}.x`, payload: '{}', msgId: uuidv7() }], 2_000),
    ).rejects.toThrow(/no stream takes this subject|no acknowledgement/);
    // The stream holds each event once.
    const stored = await js.publishMany([message(events[299])]);
    expect(stored[0]).toEqual({ duplicate: true, seq: first[299].seq });
  });

  it("retires a service's consumers it no longer lists, and no one else's", async () => {
    for (const durable of ['svc', 'svc-kept', 'svc-old', 'svcx', 'other-svc'])
      await js.ensureConsumer({ durable, filterSubject: js.subjectsOfAggregate('task') });
    expect((await js.retireConsumers('svc', ['svc-kept'])).sort()).toEqual(['svc', 'svc-old']);
    const jsm = await jetstreamManager(js.connection);
    const exists = (durable: string) =>
      jsm.consumers.info(env.stream, durable).then(
        () => true,
        () => false,
      );
    const names = ['svc', 'svc-kept', 'svc-old', 'svcx', 'other-svc'];
    const left = await Promise.all(names.map(exists));
    expect(names.filter((_, i) => left[i])).toEqual(['svc-kept', 'svcx', 'other-svc']);
    expect(await js.retireConsumers('svc', ['svc-kept'])).toEqual([]);
    // A consumer that is gone (or not created yet) has nothing pending.
    expect(await js.consumerPending('svc-old')).toBe(0);
  });

  it('acknowledges a burst in groups, and sends the acks still grouped when it stops', async () => {
    const options = {
      servers: env.natsUrl,
      stream: env.stream,
      subjectPrefix: env.subjectPrefix,
      duplicateWindowMs: 120_000,
      name: 'jetstream-test-groups',
      log: () => undefined,
    };
    const spec = { durable: 'grouped', filterSubject: js.subjectOfType('TaskResumed') };
    await js.ensureConsumer(spec);
    const burst = Array.from({ length: 300 }, () => event(uuidv7(), 'TaskResumed'));
    await Promise.all(burst.map((e) => js.publish(e)));

    const consumer = new JetStreamService(options);
    await consumer.connect();
    const ids = new Set(burst.map((e) => e.id));
    const seen = new Set<string>();
    let stopping: Promise<void> | undefined;
    await consumer.consume(spec, async (e) => {
      if (ids.has(e.id)) seen.add(e.id);
      // Stops the moment the last one is handled: its ack, and the group's, are still waiting.
      if (seen.size === burst.length) stopping ??= consumer.drain();
      return ack();
    });
    await eventually('the burst handled and the consumer stopped', async () => stopping !== undefined);
    await stopping;
    // (The stream also holds earlier tests' TaskResumed events, delivered first.)
    const stats = consumer.stats.get('grouped')!;
    expect(stats.handled).toBeGreaterThanOrEqual(300);
    expect(stats.acked).toBe(stats.handled);
    // Nothing left to deliver or waiting for an ack: every ack reached the server.
    await eventually(
      'no message pending or unacknowledged',
      async () => (await js.consumerPending('grouped')) === 0,
    );
  });
});
