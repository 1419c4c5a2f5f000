import { DataSource } from 'typeorm';
import { newEvent } from '@edm/events';
import { EventStore, rebuildReadModels, uuidv7 } from '@edm/event-store';
import { createDataSource, runMigrations } from '@edm/persistence';
import { createTestEnvironment, TestEnvironment } from '@edm/testing';
import { allProjections } from './index';

const meta = { correlationId: 'rebuild', causationId: null };

describe('read models rebuilt from the events', () => {
  let env: TestEnvironment;
  let db: DataSource;
  let store: EventStore;

  beforeAll(async () => {
    env = await createTestEnvironment('rebuild');
    db = createDataSource({ url: env.databaseUrl, poolSize: 4, applicationName: 'test' });
    await db.initialize();
    await runMigrations(db);
    store = new EventStore(db);
    store.register(...allProjections);
  });

  afterAll(async () => {
    await db.destroy();
    await env.dispose();
  });

  const snapshot = async () => {
    const out: Record<string, unknown[]> = {};
    for (const table of [
      'accounts',
      'api_keys',
      'sending_services',
      'contacts',
      'templates',
      'tasks',
      'sub_tasks',
    ]) {
      out[table] = await db.query(`SELECT * FROM ${table} ORDER BY id`);
    }
    return out;
  };

  it('equal the originals after a history of every kind of event', async () => {
    const accountId = uuidv7();
    const serviceId = uuidv7();
    const templateId = uuidv7();
    const taskId = uuidv7();
    const contacts = Array.from({ length: 30 }, (_, i) => ({
      contactId: uuidv7(),
      email: `c${i}@example.com`,
    }));
    const one = (streamId: string, ...events: Parameters<typeof newEvent>[]) =>
      store.appendToStream(
        streamId,
        'any',
        events.map(([type, data]) => newEvent(type, data as never)),
        meta,
      );

    await one(`account-${accountId}`, ['AccountCreated', { accountId, name: "Acme 'quoted' 测试" }]);
    await one(`api-key-${uuidv7()}`, [
      'ApiKeyIssued',
      {
        keyId: uuidv7(),
        accountId,
        role: 'account',
        keyHash: 'h'.repeat(64),
        prefix: 'edm_acc_x',
        label: 'k',
      },
    ]);
    await one(
      `service-${serviceId}`,
      [
        'ServiceCreated',
        {
          serviceId,
          accountId,
          provider: 'sandbox',
          name: 's',
          from: { email: 'a@example.com' },
          pace: { intervalMs: 310 },
          dailyQuota: 100,
          quotaResetHourUtc: 0,
          options: { latencyMs: 5 },
          credentialsSealed: null,
        },
      ],
      [
        'ServiceUpdated',
        {
          serviceId,
          changes: {
            name: 's2',
            pace: { perSecond: 3, burst: 2 },
            from: { email: 'b@example.com', name: 'B' },
          },
        },
      ],
      [
        'ServiceFrozen',
        { serviceId, reason: 'auth failed', until: new Date(Date.now() + 60_000).toISOString() },
      ],
    );
    await db.transaction((tx) =>
      store.append(
        tx,
        contacts.map((c, i) => ({
          streamId: `contact-${c.contactId}`,
          expectedVersion: 'no_stream' as const,
          events: [
            newEvent('ContactUpserted', {
              ...c,
              accountId,
              name: i % 2 ? `N${i}` : null,
              attributes: { i },
              tags: ['all', `g${i % 3}`],
            }),
          ],
        })),
        meta,
      ),
    );
    await one(`contact-${contacts[0].contactId}`, [
      'ContactSuppressed',
      { contactId: contacts[0].contactId, status: 'unsubscribed', reason: 'link' },
    ]);
    await one(`contact-${contacts[1].contactId}`, [
      'ContactSoftBounced',
      { contactId: contacts[1].contactId, softBounces: 2 },
    ]);
    await one(
      `template-${templateId}`,
      [
        'TemplateCreated',
        { templateId, accountId, name: 't', subject: 'Hi {{name}}', html: '<b>x</b>', text: null },
      ],
      ['TemplateUpdated', { templateId, changes: { text: 'plain' } }],
    );
    await one(
      `task-${taskId}`,
      [
        'TaskCreated',
        {
          taskId,
          accountId,
          name: 'task',
          subject: 's',
          html: null,
          text: 't',
          templateId,
          serviceIds: [serviceId],
          priority: 1,
          scheduledAt: null,
          status: 'sending',
          total: 30,
          skipped: 1,
        },
      ],
      [
        'SubTasksMaterialised',
        {
          taskId,
          accountId,
          chunk: 0,
          subTasks: contacts.slice(0, 20).map((c, i) => ({
            id: uuidv7(),
            contactId: c.contactId,
            email: c.email,
            trackingId: `tr${i}`,
            status: i === 0 ? ('skipped' as const) : ('pending' as const),
          })),
        },
      ],
      [
        'SubTasksMaterialised',
        {
          taskId,
          accountId,
          chunk: 1,
          subTasks: contacts.slice(20).map((c, i) => ({
            id: uuidv7(),
            contactId: c.contactId,
            email: c.email,
            trackingId: `tr2${i}`,
            status: 'pending' as const,
          })),
        },
      ],
      ['TaskPaused', { taskId }],
      ['TaskResumed', { taskId }],
    );
    // One sub-task through its whole life, its webhook steps back to back (one bulk statement
    // must not swallow one of two events of the same sub-task).
    const [{ id: sent }] = await db.query(
      `SELECT id FROM sub_tasks WHERE task_id = $1 AND status = 'pending' ORDER BY id LIMIT 1`,
      [taskId],
    );
    const ref = { subTaskId: sent, taskId };
    const at = (ms: number) => new Date(Date.UTC(2026, 10, 28, 12) + ms).toISOString();
    await one(
      `subtask-${sent}`,
      ['SubTaskLeased', { ...ref, serviceId, leaseOwner: 'd1', leaseExpiresAt: at(60_000), attempt: 1 }],
      ['SubTaskSending', { ...ref, serviceId }],
      ['SubTaskSent', { ...ref, serviceId, providerMessageId: 'pm-1', sentAt: at(1_000) }],
      [
        'SubTaskProgressed',
        {
          ...ref,
          from: 'sent',
          to: 'delivered',
          mailEvent: 'delivered',
          eventLogId: uuidv7(),
          occurredAt: at(2_000),
        },
      ],
      [
        'SubTaskProgressed',
        {
          ...ref,
          from: 'delivered',
          to: 'opened',
          mailEvent: 'open',
          eventLogId: uuidv7(),
          occurredAt: at(3_000),
        },
      ],
    );
    // A lease and its sends as the dispatcher appends them now: one event for a batch, in a
    // stream of its own. One of the two is sent, the other still in flight when the task is
    // cancelled. Neither sub-task's own stream, or version, moves.
    const batch: { id: string }[] = await db.query(
      `SELECT id FROM sub_tasks WHERE task_id = $1 AND status = 'pending' ORDER BY id LIMIT 2`,
      [taskId],
    );
    await one(`lease-${uuidv7()}`, [
      'SubTaskBatchLeased',
      {
        taskId,
        serviceId,
        leaseOwner: 'd2',
        leaseExpiresAt: at(70_000),
        subTasks: batch.map(({ id }, i) => ({ subTaskId: id, attempt: i + 1 })),
      },
    ]);
    await one(`sends-${uuidv7()}`, [
      'SubTaskBatchSent',
      { taskId, serviceId, sent: [{ subTaskId: batch[0].id, providerMessageId: 'pm-2', sentAt: at(4_000) }] },
    ]);
    await one(`task-${taskId}`, ['TaskCancelled', { taskId, cancelledSubTasks: 26 }]);

    const before = await snapshot();
    expect(before.sub_tasks).toHaveLength(30);
    const opened = (
      before.sub_tasks as { id: string; status: string; delivered_at: Date; opened_at: Date }[]
    ).find((r) => r.id === sent)!;
    expect(opened).toMatchObject({
      status: 'opened',
      delivered_at: new Date(at(2_000)),
      opened_at: new Date(at(3_000)),
    });
    const leased = (before.sub_tasks as { id: string }[]).filter((r) => batch.some((b) => b.id === r.id));
    expect(leased).toEqual([
      expect.objectContaining({
        id: batch[0].id,
        status: 'sent',
        provider_message_id: 'pm-2',
        sent_at: new Date(at(4_000)),
        lease_owner: null,
        attempts: 1,
        version: 0,
      }),
      expect.objectContaining({
        id: batch[1].id,
        status: 'sending',
        service_id: serviceId,
        lease_owner: 'd2',
        lease_expires_at: new Date(at(70_000)),
        attempts: 2,
        version: 0,
      }),
    ]);
    const report = await rebuildReadModels(db, store, 7);
    expect(report.events).toBeGreaterThan(40);
    expect(await snapshot()).toEqual(before);
  });

  it("replay a stream in its versions' order when an older transaction appended its later version", async () => {
    const accountId = uuidv7();
    const contactId = uuidv7();
    const upsert = (name: string) =>
      newEvent('ContactUpserted', {
        contactId,
        accountId,
        email: 'order@example.com',
        name,
        attributes: {},
        tags: [],
      });
    await store.appendToStream(
      `account-${accountId}`,
      'no_stream',
      [newEvent('AccountCreated', { accountId, name: 'a' })],
      meta,
    );
    await store.appendToStream(`contact-${contactId}`, 'no_stream', [upsert('first')], meta);
    // The older transaction takes its id first, then waits while a younger one renames the
    // contact; only then does it append its own rename, the stream's later version.
    const older = db.createQueryRunner();
    await older.connect();
    await older.startTransaction();
    await older.query('SELECT pg_current_xact_id()');
    await store.appendToStream(`contact-${contactId}`, 'any', [upsert('second')], meta);
    await store.append(
      older.manager,
      [
        {
          streamId: `contact-${contactId}`,
          expectedVersion: 'any',
          events: [upsert('third')],
        },
      ],
      meta,
    );
    await older.commitTransaction();
    await older.release();
    const live = await db.query(`SELECT * FROM contacts WHERE id = $1`, [contactId]);
    expect(live[0].name).toBe('third');
    await rebuildReadModels(db, store);
    expect(await db.query(`SELECT * FROM contacts WHERE id = $1`, [contactId])).toEqual(live);
  });
});
