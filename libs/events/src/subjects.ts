import { DomainEvent } from './domain-event';
import { EventType } from './event-data.schemas';

/** `edm.<aggregate>.<event>` in kebab case (SPEC appendix A); the aggregate is the type's first word. */
const aggregateOf: Record<string, string> = {
  Account: 'account',
  ApiKey: 'api-key',
  Service: 'service',
  Contact: 'contact',
  Template: 'template',
  Task: 'task',
  SubTask: 'subtask',
  SubTasks: 'subtask',
  Alert: 'alert',
  Mail: 'mail',
};

const kebab = (word: string) => word.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();

/**
 * Types published on another type's subject. A lease and a batch of sends are published on the
 * subjects SPEC appendix A fixes for them, `edm.subtask.leased` and `edm.subtask.sent`, as the
 * per-mail events before them were: a consumer of those subjects still receives every lease and
 * send, and tells the two forms apart by the body's `type` (the batch forms list their sub-tasks
 * in `data.subTasks` and `data.sent`).
 */
const PUBLISHED_AS: Partial<Record<EventType, EventType>> = {
  SubTaskBatchLeased: 'SubTaskLeased',
  SubTaskBatchSent: 'SubTaskSent',
};

export function subjectFor(prefix: string, published: EventType): string {
  const type = PUBLISHED_AS[published] ?? published;
  const aggregate = Object.keys(aggregateOf)
    .sort((a, b) => b.length - a.length)
    .find((name) => type.startsWith(name));
  if (!aggregate) throw new Error(`no aggregate for event type ${type}`);
  return `${prefix}.${aggregateOf[aggregate]}.${kebab(type.slice(aggregate.length))}`;
}

/** The types of recorded provider events, published by their provider event's type. */
export type MailEventRecordType = 'MailEventRecorded' | 'MailEventsRecorded';

export const isMailEventRecord = (type: EventType): type is MailEventRecordType =>
  type === 'MailEventRecorded' || type === 'MailEventsRecorded';

/** Provider events are published as `edm.mail.<normalised-event>` (kebab case), others by type. */
export function subjectOf(prefix: string, event: DomainEvent): string {
  return subjectOfStored(
    prefix,
    event.type,
    event.type === 'MailEventRecorded' || event.type === 'MailEventsRecorded' ? event.data.type : null,
  );
}

/** subjectOf from the event's type and, for recorded provider events, their provider event's type. */
export function subjectOfStored(prefix: string, type: EventType, mailEventType: string | null): string {
  if (isMailEventRecord(type)) return `${prefix}.mail.${(mailEventType ?? 'other').replace(/_/g, '-')}`;
  return subjectFor(prefix, type);
}
