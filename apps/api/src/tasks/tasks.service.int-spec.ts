import { DataSource } from 'typeorm';
import { newEvent } from '@edm/events';
import { EventStore, rebuildReadModels, uuidv7 } from '@edm/event-store';
import { createDataSource, runMigrations } from '@edm/persistence';
import { allProjections } from '@edm/read-models';
import { createTestEnvironment, TestEnvironment } from '@edm/testing';
import { Principal } from '../auth/principal';
import { TasksService } from './tasks.service';

const meta = { correlationId: 'tasks-service', causationId: null };

/** Pausing and resuming tasks against real Postgres, as the API's commands do it. */
describe('TasksService pause and resume (Postgres)', () => {
  let env: TestEnvironment;
  let db: DataSource;
  let store: EventStore;
  let tasks: TasksService;
  const accountId = uuidv7();
  const serviceId = uuidv7();
  const principal: Principal = { keyId: uuidv7(), accountId, role: 'account' };

  beforeAll(async () => {
    env = await createTestEnvironment('tasks_service');
    db = createDataSource({ url: env.databaseUrl, poolSize: 2, applicationName: 'test' });
    await db.initialize();
    await runMigrations(db);
    store = new EventStore(db);
    store.register(...allProjections);
    tasks = new TasksService(db, store, env.config());
    await store.appendToStream(
      `account-${accountId}`,
      'any',
      [newEvent('AccountCreated', { accountId, name: 'acct' })],
      meta,
    );
    await store.appendToStream(
      `service-${serviceId}`,
      'any',
      [
        newEvent('ServiceCreated', {
          serviceId,
          accountId,
          provider: 'sandbox',
          name: 's',
          from: { email: 'a@example.com' },
          pace: { intervalMs: 0 },
          dailyQuota: null,
          quotaResetHourUtc: 0,
          options: {},
          credentialsSealed: null,
        }),
      ],
      meta,
    );
  });

  afterAll(async () => {
    await db.destroy();
    await env.dispose();
  });

  /** A task of two pending sub-tasks, created as the create-task use case would record it. */
  const createTask = async (status: 'scheduled' | 'sending', scheduledAt: Date | null) => {
    const taskId = uuidv7();
    const subTaskIds = [uuidv7(), uuidv7()];
    await store.appendToStream(
      `task-${taskId}`,
      'no_stream',
      [
        newEvent('TaskCreated', {
          taskId,
          accountId,
          name: 't',
          subject: 's',
          html: null,
          text: 't',
          templateId: null,
          serviceIds: [serviceId],
          priority: 0,
          scheduledAt: scheduledAt?.toISOString() ?? null,
          status,
          total: 2,
          skipped: 0,
        }),
        newEvent('SubTasksMaterialised', {
          taskId,
          accountId,
          chunk: 0,
          subTasks: subTaskIds.map((id, i) => ({
            id,
            contactId: uuidv7(),
            email: `r${i}-${taskId}@example.com`,
            trackingId: `${id.replace(/-/g, '')}`,
            status: 'pending' as const,
          })),
        }),
      ],
      meta,
    );
    return { taskId, subTaskIds };
  };

  const statusOf = async (taskId: string) =>
    (await db.query(`SELECT status FROM tasks WHERE id = $1`, [taskId]))[0].status;

  const tables = async () => ({
    tasks: await db.query(`SELECT * FROM tasks ORDER BY id`),
    subTasks: await db.query(`SELECT * FROM sub_tasks ORDER BY id`),
  });

  it('completes a task on resume when its last sends were recorded while it was paused', async () => {
    const { taskId, subTaskIds } = await createTask('sending', null);
    await store.appendToStream(
      `lease-${uuidv7()}`,
      'no_stream',
      [
        newEvent('SubTaskBatchLeased', {
          taskId,
          serviceId,
          leaseOwner: 'd1',
          leaseExpiresAt: new Date(Date.now() + 60_000).toISOString(),
          subTasks: subTaskIds.map((subTaskId) => ({ subTaskId, attempt: 1 })),
        }),
      ],
      meta,
    );
    await tasks.transition(principal, taskId, 'pause');
    // The batch in flight when the task was paused comes back: nothing is left to send.
    await store.appendToStream(
      `sends-${uuidv7()}`,
      'no_stream',
      [
        newEvent('SubTaskBatchSent', {
          taskId,
          serviceId,
          sent: subTaskIds.map((subTaskId) => ({
            subTaskId,
            providerMessageId: `pm-${subTaskId}`,
            sentAt: new Date().toISOString(),
          })),
        }),
      ],
      meta,
    );
    expect(await statusOf(taskId)).toBe('paused');

    const resumed = await tasks.transition(principal, taskId, 'resume');

    expect(resumed.status).toBe('completed');
    expect(resumed.completedAt).not.toBeNull();
    const types = (await store.readStream(`task-${taskId}`)).map((e) => e.type);
    expect(types.slice(-3)).toEqual(['TaskPaused', 'TaskResumed', 'TaskCompleted']);
  });

  it('resumes a task that still has sub-tasks to send into sending, not completed', async () => {
    const { taskId } = await createTask('sending', null);
    await tasks.transition(principal, taskId, 'pause');

    const resumed = await tasks.transition(principal, taskId, 'resume');

    expect(resumed.status).toBe('sending');
    expect(resumed.counts.pending).toBe(2);
  });

  it('puts a task paused while scheduled back to scheduled when resumed before its time', async () => {
    const tomorrow = new Date(Date.now() + 24 * 3_600_000);
    const { taskId } = await createTask('scheduled', tomorrow);
    await tasks.transition(principal, taskId, 'pause');

    const resumed = await tasks.transition(principal, taskId, 'resume');

    expect(resumed.status).toBe('scheduled');
    expect(resumed.scheduledAt).toEqual(tomorrow);
    expect(resumed.etaSeconds).toBeNull();
  });

  it('resumes a scheduled task whose time passed while it was paused into sending', async () => {
    const { taskId } = await createTask('scheduled', new Date(Date.now() - 60_000));
    await tasks.transition(principal, taskId, 'pause');

    const resumed = await tasks.transition(principal, taskId, 'resume');

    expect(resumed.status).toBe('sending');
  });

  it('rebuilds the same task rows from the events as the commands left them', async () => {
    const before = await tables();
    expect(before.tasks.map((t: { status: string }) => t.status).sort()).toEqual([
      'completed',
      'scheduled',
      'sending',
      'sending',
    ]);

    await rebuildReadModels(db, store);

    expect(await tables()).toEqual(before);
  });
});
