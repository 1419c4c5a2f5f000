import { eventDataSchemas, EventType } from './event-data.schemas';
import { parseDomainEvent, InvalidEventError } from './domain-event';
import { subjectFor, subjectOf, subjectOfStored } from './subjects';

describe('subjects', () => {
  it.each<[EventType, string]>([
    ['TaskCreated', 'edm.task.created'],
    ['TaskPaused', 'edm.task.paused'],
    ['SubTaskLeased', 'edm.subtask.leased'],
    ['SubTaskBatchLeased', 'edm.subtask.leased'],
    ['SubTaskSent', 'edm.subtask.sent'],
    ['SubTaskBatchSent', 'edm.subtask.sent'],
    ['SubTasksMaterialised', 'edm.subtask.materialised'],
    ['ServiceFrozen', 'edm.service.frozen'],
    ['ServiceQuotaExhausted', 'edm.service.quota-exhausted'],
    ['AlertRaised', 'edm.alert.raised'],
    ['ApiKeyIssued', 'edm.api-key.issued'],
  ])('%s → %s', (type, subject) => {
    expect(subjectFor('edm', type)).toBe(subject);
  });

  it('publishes provider events as edm.mail.<type>', () => {
    const recorded = { type: 'MailEventRecorded', data: { type: 'hard_bounce' } } as unknown as Parameters<
      typeof subjectOf
    >[1];
    expect(subjectOf('edm', recorded)).toBe('edm.mail.hard-bounce');
    const batch = {
      type: 'MailEventsRecorded',
      data: { type: 'click', events: [] },
    } as unknown as Parameters<typeof subjectOf>[1];
    expect(subjectOf('edm', batch)).toBe('edm.mail.click');
    expect(subjectOfStored('edm', 'MailEventsRecorded', null)).toBe('edm.mail.other');
  });

  it('gives every event type a distinct subject, but for the batch forms of a lease and of sends', () => {
    const types = Object.keys(eventDataSchemas) as EventType[];
    const shared = ['SubTaskBatchLeased', 'SubTaskBatchSent'];
    expect(new Set(types.map((t) => subjectFor('edm', t))).size).toBe(types.length - shared.length);
  });
});

describe('parseDomainEvent', () => {
  const valid = {
    id: '018f3a52-6b1e-7000-8000-000000000001',
    type: 'TaskPaused',
    streamId: 'task-1',
    version: 2,
    occurredAt: new Date().toISOString(),
    data: { taskId: '018f3a52-6b1e-7000-8000-000000000002' },
    metadata: { correlationId: 'c', causationId: null },
  };

  it('accepts a well-formed event', () => {
    expect(parseDomainEvent(valid).type).toBe('TaskPaused');
  });

  it.each([
    ['unknown type', { ...valid, type: 'Nope' }],
    ['bad data', { ...valid, data: { taskId: 3 } }],
    ['no envelope', 'TaskPaused'],
    ['prototype key', { ...valid, type: '__proto__' }],
  ])('rejects %s', (_, payload) => {
    expect(() => parseDomainEvent(payload)).toThrow(InvalidEventError);
  });
});
