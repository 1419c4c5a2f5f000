import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@edm/config';
import { completeTasksIfDone, diagnoseTask, repairTask } from '@edm/workflows';
import { DataSource } from 'typeorm';
import { z } from 'zod';
import { EventType, newEvent, NewEvent, Pace, TaskStatus } from '@edm/events';
import { EventStore, retryOnConflict } from '@edm/event-store';
import { DomainError, notFound } from '@edm/platform';
import { commandMetadata } from '../auth/command-metadata';
import { Principal } from '../auth/principal';
import { taskCounts } from './task-counts';
import { etaSeconds } from './task-eta';
import { ListSubTasksQuery, ListTasksQuery } from './tasks.schemas';

type Transition = 'pause' | 'resume' | 'cancel';

/** Which task statuses each operator command accepts, and the event it produces. */
const TRANSITIONS: Record<Transition, { from: readonly TaskStatus[]; event: EventType }> = {
  pause: { from: ['scheduled', 'sending'], event: 'TaskPaused' },
  resume: { from: ['paused'], event: 'TaskResumed' },
  cancel: { from: ['scheduled', 'sending', 'paused'], event: 'TaskCancelled' },
};

const isUuid = (id: string) => z.string().uuid().safeParse(id).success;

@Injectable()
export class TasksService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly store: EventStore,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async get(principal: Principal, id: string) {
    const task = await this.row(principal, id);
    const [statusRows, serviceRows, paces] = await Promise.all([
      this.dataSource.query(
        `SELECT status, count(*)::int AS count FROM sub_tasks WHERE task_id = $1 GROUP BY status`,
        [id],
      ),
      this.dataSource.query(
        `SELECT st.service_id AS "serviceId", s.name, s.status AS "serviceStatus", st.status, count(*)::int AS count
           FROM sub_tasks st JOIN sending_services s ON s.id = st.service_id
          WHERE st.task_id = $1 GROUP BY st.service_id, s.name, s.status, st.status`,
        [id],
      ),
      this.dataSource.query(
        `SELECT s.pace FROM sending_services s
          WHERE s.account_id = $1 AND s.status = 'active' AND (cardinality($2::uuid[]) = 0 OR s.id = ANY ($2::uuid[]))`,
        [principal.accountId, task.serviceIds],
      ),
    ]);
    type ServiceSplit = {
      serviceId: string;
      name: string;
      status: string;
      rows: { status: string; count: number }[];
    };
    const byService = new Map<string, ServiceSplit>();
    for (const r of serviceRows) {
      const entry: ServiceSplit = byService.get(r.serviceId) ?? {
        serviceId: r.serviceId,
        name: r.name,
        status: r.serviceStatus,
        rows: [],
      };
      entry.rows.push({ status: r.status, count: r.count });
      byService.set(r.serviceId, entry);
    }
    const counts = taskCounts(statusRows);
    return {
      ...task,
      counts,
      etaSeconds:
        task.status === 'sending'
          ? etaSeconds(
              counts.pending,
              paces.map((p: { pace: Pace }) => p.pace),
            )
          : null,
      services: [...byService.values()].map(({ rows, ...s }) => ({ ...s, counts: taskCounts(rows) })),
    };
  }

  async list(principal: Principal, query: ListTasksQuery) {
    const items = await this.dataSource.query(
      `SELECT id, name, status, total, priority, scheduled_at AS "scheduledAt", created_at AS "createdAt", completed_at AS "completedAt"
         FROM tasks WHERE account_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR id < $3)
        ORDER BY id DESC LIMIT $4`,
      [principal.accountId, query.status ?? null, query.cursor ?? null, query.limit],
    );
    return { items, nextCursor: items.length === query.limit ? items[items.length - 1].id : null };
  }

  async subTasks(principal: Principal, id: string, query: ListSubTasksQuery) {
    await this.row(principal, id);
    const items = await this.dataSource.query(
      `SELECT id, email, status, service_id AS "serviceId", provider_message_id AS "providerMessageId", tracking_id AS "trackingId",
              attempts, last_error AS "lastError", lease_expires_at AS "leaseExpiresAt", next_attempt_at AS "nextAttemptAt",
              sent_at AS "sentAt", delivered_at AS "deliveredAt", opened_at AS "openedAt", clicked_at AS "clickedAt", updated_at AS "updatedAt"
         FROM sub_tasks WHERE task_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR id > $3)
        ORDER BY id LIMIT $4`,
      [id, query.status ?? null, query.cursor ?? null, query.limit],
    );
    return { items, nextCursor: items.length === query.limit ? items[items.length - 1].id : null };
  }

  /** The task's own stream, without the bulky sub-task seeds. */
  async timeline(principal: Principal, id: string) {
    await this.row(principal, id);
    const events = await this.store.readStream(`task-${id}`);
    return {
      items: events.map((e) => ({
        id: e.id,
        type: e.type,
        version: e.version,
        occurredAt: e.occurredAt,
        data:
          e.type === 'SubTasksMaterialised'
            ? { chunk: e.data.chunk, subTasks: e.data.subTasks.length }
            : e.data,
        actor: e.metadata.actor ?? null,
      })),
    };
  }

  async transition(principal: Principal, id: string, command: Transition) {
    await this.row(principal, id);
    await retryOnConflict(() =>
      this.dataSource.transaction(async (tx) => {
        const [task] = await tx.query(`SELECT status FROM tasks WHERE id = $1 FOR UPDATE`, [id]);
        const rule = TRANSITIONS[command];
        if (!rule.from.includes(task.status)) {
          throw new DomainError('INVALID_STATE', `cannot ${command} a task that is ${task.status}`);
        }
        let event: NewEvent;
        if (command === 'cancel') {
          const [{ count }] = await tx.query(
            `SELECT count(*)::int AS count FROM sub_tasks WHERE task_id = $1 AND status = 'pending'`,
            [id],
          );
          event = newEvent('TaskCancelled', { taskId: id, cancelledSubTasks: count });
        } else {
          event = newEvent(rule.event as 'TaskPaused' | 'TaskResumed', { taskId: id });
        }
        const meta = commandMetadata(principal);
        await this.store.append(
          tx,
          [{ streamId: `task-${id}`, expectedVersion: 'any', events: [event] }],
          meta,
        );
        // Sends in flight when the task was paused may have finished it meanwhile, and completion
        // skips paused tasks: nothing else would ever complete it once it is sending again.
        if (command === 'resume') await completeTasksIfDone(tx, this.store, [id], meta);
      }),
    );
    return this.get(principal, id);
  }

  async diagnose(principal: Principal, id: string) {
    await this.row(principal, id);
    return this.dataSource.transaction('REPEATABLE READ', (tx) => diagnoseTask(tx, id, this.thresholds()));
  }

  async repair(principal: Principal, id: string) {
    await this.row(principal, id);
    const report = await retryOnConflict(() =>
      this.dataSource.transaction((tx) =>
        repairTask(tx, this.store, id, this.thresholds(), commandMetadata(principal)),
      ),
    );
    return { ...report, diagnosis: await this.diagnose(principal, id) };
  }

  private thresholds() {
    return {
      stuckLeaseMs: this.config.MONITOR_STUCK_LEASE_MS,
      webhookGraceMs: this.config.MONITOR_WEBHOOK_GRACE_MS,
    };
  }

  private async row(principal: Principal, id: string) {
    if (!isUuid(id)) throw notFound('task');
    const [task] = await this.dataSource.query(
      `SELECT id, name, status, subject, template_id AS "templateId", service_ids AS "serviceIds", priority, total,
              scheduled_at AS "scheduledAt", created_at AS "createdAt", updated_at AS "updatedAt", completed_at AS "completedAt"
         FROM tasks WHERE id = $1 AND account_id = $2`,
      [id, principal.accountId],
    );
    if (!task) throw notFound('task');
    return task;
  }
}
