import { EntityManager } from 'typeorm';
import { DomainEvent, isEvent } from '@edm/events';
import { Projection } from '@edm/event-store';

/** Tasks and their sub-tasks as created, paused, resumed, cancelled and completed. */
export const tasksProjection: Projection = {
  name: 'tasks',
  tables: ['sub_tasks', 'tasks'],
  handles: [
    'TaskCreated',
    'SubTasksMaterialised',
    'TaskStarted',
    'TaskPaused',
    'TaskResumed',
    'TaskCancelled',
    'TaskCompleted',
  ],
  async apply(tx: EntityManager, events: readonly DomainEvent[]) {
    for (const event of events) {
      const at = event.occurredAt;
      if (isEvent(event, 'TaskCreated')) {
        const d = event.data;
        await tx.query(
          `INSERT INTO tasks (id, account_id, name, subject, html, text, template_id, service_ids, priority, scheduled_at,
                              status, total, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)`,
          [
            d.taskId,
            d.accountId,
            d.name,
            d.subject,
            d.html,
            d.text,
            d.templateId,
            d.serviceIds,
            d.priority,
            d.scheduledAt,
            d.status,
            d.total,
            at,
          ],
        );
      } else if (isEvent(event, 'SubTasksMaterialised')) {
        const s = event.data.subTasks;
        await tx.query(
          `INSERT INTO sub_tasks (id, task_id, account_id, contact_id, email, status, tracking_id, next_attempt_at, created_at, updated_at)
           SELECT u.id, $6, $7, u.contact_id, u.email, u.status, u.tracking_id, $8, $8, $8
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[]) AS u(id, contact_id, email, status, tracking_id)`,
          [
            s.map((x) => x.id),
            s.map((x) => x.contactId),
            s.map((x) => x.email),
            s.map((x) => x.status),
            s.map((x) => x.trackingId),
            event.data.taskId,
            event.data.accountId,
            at,
          ],
        );
      } else if (isEvent(event, 'TaskStarted')) {
        await tx.query(`UPDATE tasks SET status = 'sending', updated_at = $2 WHERE id = $1`, [
          event.data.taskId,
          at,
        ]);
      } else if (isEvent(event, 'TaskResumed')) {
        // A task resumed before its scheduled time waits for it again (the scheduler starts it
        // then). Measured against the time the event records, not the clock, so a rebuild gives
        // the same answer as the resume did.
        await tx.query(
          `UPDATE tasks SET status = CASE WHEN scheduled_at > $2 THEN 'scheduled' ELSE 'sending' END, updated_at = $2
            WHERE id = $1`,
          [event.data.taskId, at],
        );
      } else if (isEvent(event, 'TaskPaused')) {
        await tx.query(`UPDATE tasks SET status = 'paused', updated_at = $2 WHERE id = $1`, [
          event.data.taskId,
          at,
        ]);
      } else if (isEvent(event, 'TaskCancelled')) {
        await tx.query(`UPDATE tasks SET status = 'cancelled', updated_at = $2 WHERE id = $1`, [
          event.data.taskId,
          at,
        ]);
        await tx.query(
          `UPDATE sub_tasks SET status = 'cancelled', updated_at = $2 WHERE task_id = $1 AND status = 'pending'`,
          [event.data.taskId, at],
        );
      } else if (isEvent(event, 'TaskCompleted')) {
        await tx.query(
          `UPDATE tasks SET status = 'completed', completed_at = $2, updated_at = $2 WHERE id = $1`,
          [event.data.taskId, at],
        );
      }
    }
  },
};
