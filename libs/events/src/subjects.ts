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

export function subjectFor(prefix: string, type: EventType): string {
  const aggregate = Object.keys(aggregateOf)
    .sort((a, b) => b.length - a.length)
    .find((name) => type.startsWith(name));
  if (!aggregate) throw new Error(`no aggregate for event type ${type}`);
  return `${prefix}.${aggregateOf[aggregate]}.${kebab(type.slice(aggregate.length))}`;
}

/** Provider events are published as `edm.mail.<normalised-event>` (kebab case), others by type. */
export function subjectOf(prefix: string, event: DomainEvent): string {
  return subjectOfStored(prefix, event.type, event.type === 'MailEventRecorded' ? event.data.type : null);
}

/** subjectOf from the event's type and, for MailEventRecorded, its provider event's type. */
export function subjectOfStored(prefix: string, type: EventType, mailEventType: string | null): string {
  if (type === 'MailEventRecorded') return `${prefix}.mail.${(mailEventType ?? 'other').replace(/_/g, '-')}`;
  return subjectFor(prefix, type);
}
