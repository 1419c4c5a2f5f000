import { EntityManager } from 'typeorm';
import { contactSuppression, MailEventType, progressSubTask } from '@edm/domain';
import { EventMetadata, newEvent, SubTaskStatus } from '@edm/events';
import { EventStore, StreamAppend } from '@edm/event-store';
import { completeTasksIfDone } from '@edm/workflows';

export interface MatchedMailEvent {
  mailEventId: string;
  eventLogId: string;
  type: MailEventType;
  occurredAt: Date;
  suppression: boolean;
  reason: string | null;
}

/**
 * Applies one matched provider event in the caller's transaction: the sub-task moves forward (or
 * not at all), and the contact is suppressed on a hard bounce, complaint or unsubscribe, or
 * after `softBounceLimit` soft bounces; a suppressed contact's pending sub-tasks are skipped.
 */
export async function applyMailEvent(
  tx: EntityManager,
  store: EventStore,
  subTaskId: string,
  event: MatchedMailEvent,
  softBounceLimit: number,
  meta: EventMetadata,
): Promise<{ from: SubTaskStatus; to: SubTaskStatus | null }> {
  const [subTask] = await tx.query(
    `SELECT id, task_id, contact_id, status, version FROM sub_tasks WHERE id = $1 FOR UPDATE`,
    [subTaskId],
  );
  const appends: StreamAppend[] = [];
  const to = progressSubTask(subTask.status, event.type);
  if (to) {
    appends.push({
      streamId: `subtask-${subTask.id}`,
      expectedVersion: subTask.version,
      events: [
        newEvent('SubTaskProgressed', {
          subTaskId: subTask.id,
          taskId: subTask.task_id,
          from: subTask.status,
          to,
          mailEvent: event.type,
          eventLogId: event.eventLogId,
          occurredAt: event.occurredAt.toISOString(),
        }),
      ],
    });
  }
  const touchedTasks: string[] = [];
  if (subTask.contact_id) {
    const [contact] = await tx.query(
      `SELECT c.id, c.status, c.soft_bounces,
              (SELECT coalesce(max(version), 0) FROM events WHERE stream_id = 'contact-' || c.id) AS version
         FROM contacts c WHERE c.id = $1 FOR UPDATE`,
      [subTask.contact_id],
    );
    if (contact?.status === 'active') {
      const contactEvents = [];
      let suppression = contactSuppression(event.type);
      if (event.type === 'soft_bounce') {
        const softBounces = contact.soft_bounces + 1;
        contactEvents.push(newEvent('ContactSoftBounced', { contactId: contact.id, softBounces }));
        if (softBounces >= softBounceLimit) suppression = 'bounced';
      }
      if (suppression) {
        contactEvents.push(
          newEvent('ContactSuppressed', {
            contactId: contact.id,
            status: suppression,
            reason: event.reason ?? `${event.type} reported by the provider`,
          }),
        );
        const pending: { id: string; task_id: string; version: number }[] = await tx.query(
          `SELECT id, task_id, version FROM sub_tasks WHERE contact_id = $1 AND status = 'pending' FOR UPDATE`,
          [contact.id],
        );
        for (const p of pending) {
          appends.push({
            streamId: `subtask-${p.id}`,
            expectedVersion: p.version,
            events: [
              newEvent('SubTaskSkipped', {
                subTaskId: p.id,
                taskId: p.task_id,
                reason: `contact ${suppression}`,
              }),
            ],
          });
          touchedTasks.push(p.task_id);
        }
      }
      if (contactEvents.length)
        appends.push({
          streamId: `contact-${contact.id}`,
          expectedVersion: Number(contact.version),
          events: contactEvents,
        });
    }
  }
  if (appends.length) await store.append(tx, appends, meta);
  if (touchedTasks.length) await completeTasksIfDone(tx, store, touchedTasks, meta);
  return { from: subTask.status, to };
}
