import { DataSource } from 'typeorm';
import { uuidv7 } from '@edm/event-store';
import { DomainEvent, parseDomainEvent } from '@edm/events';
import { createDataSource, runMigrations } from '@edm/persistence';
import { EventBusSubscriber } from '@edm/platform';
import { createTestEnvironment, TestEnvironment } from '@edm/testing';
import { MonitorStateListener } from './monitor-state.listener';

describe('monitor state from the event stream (Postgres)', () => {
  let env: TestEnvironment;
  let db: DataSource;
  let listener: MonitorStateListener;

  const envelope = (type: string, data: unknown, occurredAt: Date): DomainEvent =>
    parseDomainEvent({
      id: uuidv7(),
      type,
      streamId: `s-${uuidv7()}`,
      version: 1,
      occurredAt: occurredAt.toISOString(),
      data,
      metadata: { correlationId: 'test', causationId: null },
    });
  const record = (serviceId: string | null) => ({
    mailEventId: uuidv7(),
    eventLogId: uuidv7(),
    provider: 'sandbox',
    serviceId,
    rawType: 'delivered',
    matchStatus: 'matched',
    matchStrategy: 'tracking-id',
    subTaskId: uuidv7(),
    taskId: uuidv7(),
    occurredAt: new Date().toISOString(),
  });
  const sent = (serviceId: string, at: Date) =>
    envelope(
      'SubTaskBatchSent',
      {
        taskId: uuidv7(),
        serviceId,
        sent: [{ subTaskId: uuidv7(), providerMessageId: null, sentAt: at.toISOString() }],
      },
      at,
    );
  const ref = (taskId: string) => ({ subTaskId: uuidv7(), taskId });
  const progressOf = async (taskId: string): Promise<Date | undefined> =>
    (await db.query(`SELECT last_progress_at FROM monitor_task_state WHERE task_id = $1`, [taskId]))[0]
      ?.last_progress_at;
  const stateOf = async (serviceId: string) =>
    (
      await db.query(
        `SELECT last_sent_at, last_webhook_at, first_unanswered_sent_at FROM monitor_service_state WHERE service_id = $1`,
        [serviceId],
      )
    )[0];

  beforeAll(async () => {
    env = await createTestEnvironment('monitor-state');
    db = createDataSource({ url: env.databaseUrl, poolSize: 2, applicationName: 'test' });
    await db.initialize();
    await runMigrations(db);
    listener = new MonitorStateListener(db, {} as EventBusSubscriber);
  });

  afterAll(async () => {
    await db.destroy();
    await env.dispose();
  });

  it('hears every service of a batch of recorded provider events, once, and answers their unanswered sends', async () => {
    const [one, two] = [uuidv7(), uuidv7()];
    const sentAt = new Date(Date.now() - 60_000);
    for (const service of [one, two]) await listener.apply(sent(service, sentAt));
    expect(await stateOf(one)).toMatchObject({ first_unanswered_sent_at: sentAt, last_webhook_at: null });

    const heardAt = new Date(Date.now() - 30_000);
    const batch = envelope(
      'MailEventsRecorded',
      { type: 'delivered', events: [record(one), record(two), record(one), record(null)] },
      heardAt,
    );
    await listener.apply(batch);
    await listener.apply(batch); // redelivered: changes nothing
    for (const service of [one, two])
      expect(await stateOf(service)).toMatchObject({
        last_webhook_at: heardAt,
        first_unanswered_sent_at: null,
      });
    expect(
      (await db.query(`SELECT count(*)::int AS n FROM processed_events WHERE event_id = $1`, [batch.id]))[0]
        .n,
    ).toBe(1);
  });

  it('still hears a service through one provider event as recorded before batches', async () => {
    const service = uuidv7();
    const sentAt = new Date(Date.now() - 60_000);
    await listener.apply(sent(service, sentAt));
    const heardAt = new Date(Date.now() - 10_000);
    await listener.apply(envelope('MailEventRecorded', { ...record(service), type: 'open' }, heardAt));
    expect(await stateOf(service)).toMatchObject({
      last_webhook_at: heardAt,
      first_unanswered_sent_at: null,
    });
  });

  it('counts a task as progressing only when its sub-tasks are sent or end, not on webhooks, retries, releases or leases', async () => {
    const taskId = uuidv7();
    const serviceId = uuidv7();
    const sentAt = new Date(Date.now() - 10 * 60_000);
    await listener.apply(
      envelope(
        'SubTaskBatchSent',
        {
          taskId,
          serviceId,
          sent: [{ subTaskId: uuidv7(), providerMessageId: null, sentAt: sentAt.toISOString() }],
        },
        sentAt,
      ),
    );
    expect(await progressOf(taskId)).toEqual(sentAt);

    // The incident: the dispatcher wedged with most of the task pending, while the mail already
    // sent is delivered and opened, and leases are taken and given back without a send.
    const later = () => new Date(Date.now() - 60_000);
    const leaseExpiresAt = new Date(Date.now() + 60_000).toISOString();
    const noise: [string, unknown][] = [
      [
        'SubTaskProgressed',
        {
          ...ref(taskId),
          from: 'sent',
          to: 'opened',
          mailEvent: 'open',
          eventLogId: uuidv7(),
          occurredAt: later().toISOString(),
        },
      ],
      [
        'SubTaskBatchLeased',
        {
          taskId,
          serviceId,
          leaseOwner: 'x',
          leaseExpiresAt,
          subTasks: [{ subTaskId: uuidv7(), attempt: 1 }],
        },
      ],
      ['SubTaskLeased', { ...ref(taskId), serviceId, leaseOwner: 'x', leaseExpiresAt, attempt: 1 }],
      ['SubTaskSending', { ...ref(taskId), serviceId }],
      [
        'SubTaskRetryScheduled',
        { ...ref(taskId), serviceId, reason: 'HTTP 503', nextAttemptAt: leaseExpiresAt },
      ],
      ['SubTaskReleased', { ...ref(taskId), reason: 'lease expired', attempts: 0 }],
    ];
    for (const [type, data] of noise) await listener.apply(envelope(type, data, later()));
    expect(await progressOf(taskId)).toEqual(sentAt);

    const ends: [string, unknown][] = [
      ['SubTaskFailed', { ...ref(taskId), serviceId, reason: 'rejected' }],
      ['SubTaskUnknown', { ...ref(taskId), serviceId, reason: 'lost' }],
      ['SubTaskSkipped', { ...ref(taskId), reason: 'suppressed' }],
      ['SubTaskCancelled', ref(taskId)],
      [
        'SubTaskSent',
        { ...ref(taskId), serviceId, providerMessageId: null, sentAt: new Date().toISOString() },
      ],
    ];
    let previous = sentAt;
    for (const [type, data] of ends) {
      const at = new Date(previous.getTime() + 1_000);
      await listener.apply(envelope(type, data, at));
      expect({ type, progress: await progressOf(taskId) }).toEqual({ type, progress: at });
      previous = at;
    }
  });
});
