import { EntityManager } from 'typeorm';
import { contactSuppression, isStrongerEnding, MailEventType, progressSubTask } from '@edm/domain';
import { EventMetadata, newEvent, NewEvent, SubTaskStatus } from '@edm/events';
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

/** One matched provider event to apply to its sub-task, with the metadata of its own cause. */
export interface MailEventApplication {
  subTaskId: string;
  event: MatchedMailEvent;
  meta: EventMetadata;
}

export interface SubTaskState {
  id: string;
  task_id: string;
  contact_id: string | null;
  status: SubTaskStatus;
  version: number;
}

interface ContactState {
  id: string;
  status: string;
  soft_bounces: number;
  version: number;
}

/**
 * Applies matched provider events in the caller's transaction, in the order given: each sub-task
 * moves forward (or not at all), and its contact is suppressed on a hard bounce, complaint or
 * unsubscribe, or once `softBounceLimit` of its mails soft-bounced; a suppressed contact's pending sub-tasks
 * are skipped. The rows are locked once for the whole batch, in id order (sub-tasks, then
 * contacts), and every event is appended in one statement, each carrying its own cause, with
 * the caller's own appends (`also`, after these).
 */
export async function applyMailEvents(
  tx: EntityManager,
  store: EventStore,
  applications: readonly MailEventApplication[],
  options: {
    softBounceLimit: number;
    /** Appended in the same statement, after the events applied here. */
    also?: readonly StreamAppend[];
    /** The sub-tasks, already locked FOR UPDATE in this transaction by the caller. */
    locked?: ReadonlyMap<string, SubTaskState>;
  },
): Promise<{ from: SubTaskStatus; to: SubTaskStatus | null }[]> {
  const { softBounceLimit, also = [], locked } = options;
  const subTaskIds = [...new Set(applications.map((a) => a.subTaskId))];
  const subTasks = new Map<string, SubTaskState>(
    subTaskIds.length === 0
      ? []
      : locked && subTaskIds.every((id) => locked.has(id))
        ? subTaskIds.map((id) => [id, { ...locked.get(id)! }])
        : (
            await tx.query(
              `SELECT id, task_id, contact_id, status, version FROM sub_tasks WHERE id = ANY ($1::uuid[]) ORDER BY id FOR UPDATE`,
              [subTaskIds],
            )
          ).map((r: SubTaskState) => [r.id, r]),
  );
  // Contacts change only on a suppression or a soft bounce: only then are they read and locked.
  const touchesContacts = applications.some(
    (a) => a.event.type === 'soft_bounce' || contactSuppression(a.event.type) !== null,
  );
  const contactIds = !touchesContacts
    ? []
    : [...new Set([...subTasks.values()].map((s) => s.contact_id).filter((c) => c !== null))];
  const contacts = new Map<string, ContactState>(
    contactIds.length === 0
      ? []
      : (
          await tx.query(
            `SELECT c.id, c.status, c.soft_bounces,
                    (SELECT coalesce(max(version), 0) FROM events WHERE stream_id = 'contact-' || c.id)::int AS version
               FROM contacts c WHERE c.id = ANY ($1::uuid[]) ORDER BY c.id FOR UPDATE`,
            [contactIds],
          )
        ).map((r: ContactState) => [r.id, r]),
  );

  // A mail's soft bounces count once toward its contact's limit, however many its provider reports
  // (Mailgun reports each retry of a deferred mail as a temporary failure of its own): the mails
  // already counted are those named by the contact's ContactSoftBounced events.
  const softBounced = new Set<string>(
    contacts.size === 0 || !applications.some((a) => a.event.type === 'soft_bounce')
      ? []
      : (
          await tx.query(
            `SELECT data->>'subTaskId' AS sub_task_id FROM events
              WHERE stream_id = ANY ($1::text[]) AND type = 'ContactSoftBounced' AND data ? 'subTaskId'`,
            [[...contacts.keys()].map((id) => `contact-${id}`)],
          )
        ).map((r: { sub_task_id: string }) => r.sub_task_id),
  );
  const appends: StreamAppend[] = [];
  const touchedTasks: string[] = [];
  const results: { from: SubTaskStatus; to: SubTaskStatus | null }[] = [];
  const append = (streamId: string, expectedVersion: number, events: NewEvent[], meta: EventMetadata) =>
    appends.push({ streamId, expectedVersion, events, metadata: meta });

  for (const { subTaskId, event, meta } of applications) {
    const subTask = subTasks.get(subTaskId);
    if (!subTask) throw new Error(`sub-task ${subTaskId} does not exist`);
    const from = subTask.status;
    const to = progressSubTask(from, event.type);
    if (to) {
      append(
        `subtask-${subTask.id}`,
        subTask.version,
        [
          newEvent('SubTaskProgressed', {
            subTaskId: subTask.id,
            taskId: subTask.task_id,
            from,
            to,
            mailEvent: event.type,
            eventLogId: event.eventLogId,
            occurredAt: event.occurredAt.toISOString(),
          }),
        ],
        meta,
      );
      subTask.status = to;
      subTask.version += 1;
    }
    results.push({ from, to });
    const contact = subTask.contact_id ? contacts.get(subTask.contact_id) : undefined;
    if (!contact) continue;
    const wasActive = contact.status === 'active';
    let suppression = contactSuppression(event.type);
    // A suppressed contact changes only for a stronger ending (a complaint after an unsubscribe).
    if (!wasActive && !(suppression && isStrongerEnding(suppression, contact.status))) continue;
    const contactEvents: NewEvent[] = [];
    if (wasActive && event.type === 'soft_bounce' && !softBounced.has(subTask.id)) {
      softBounced.add(subTask.id);
      contact.soft_bounces += 1;
      contactEvents.push(
        newEvent('ContactSoftBounced', {
          contactId: contact.id,
          softBounces: contact.soft_bounces,
          subTaskId: subTask.id,
        }),
      );
      if (contact.soft_bounces >= softBounceLimit) suppression = 'bounced';
    }
    if (suppression) {
      contactEvents.push(
        newEvent('ContactSuppressed', {
          contactId: contact.id,
          status: suppression,
          reason: event.reason ?? `${event.type} reported by the provider`,
        }),
      );
      const pending: SubTaskState[] = !wasActive
        ? [] // skipped when the contact was first suppressed
        : await tx.query(
            `SELECT id, task_id, contact_id, status, version FROM sub_tasks WHERE contact_id = $1 AND status = 'pending' ORDER BY id FOR UPDATE`,
            [contact.id],
          );
      for (const row of pending) {
        const skipped = subTasks.get(row.id) ?? row;
        subTasks.set(skipped.id, skipped);
        if (skipped.status !== 'pending') continue;
        append(
          `subtask-${skipped.id}`,
          skipped.version,
          [
            newEvent('SubTaskSkipped', {
              subTaskId: skipped.id,
              taskId: skipped.task_id,
              reason: `contact ${suppression}`,
            }),
          ],
          meta,
        );
        skipped.status = 'skipped';
        skipped.version += 1;
        touchedTasks.push(skipped.task_id);
      }
      contact.status = suppression;
    }
    if (contactEvents.length) {
      append(`contact-${contact.id}`, contact.version, contactEvents, meta);
      contact.version += contactEvents.length;
    }
  }
  appends.push(...also);
  // Every append carries its own metadata; the shared argument is never used.
  if (appends.length) await store.append(tx, appends, appends[0].metadata!);
  if (touchedTasks.length) await completeTasksIfDone(tx, store, touchedTasks, applications[0].meta);
  return results;
}
