import type { SubTaskStatus } from '@edm/events';
import { contactSuppression, impliedSteps, progressSubTask } from './sub-task-lifecycle';
import { MailEventType } from './mail-event-type';

describe('sub-task life cycle', () => {
  it.each<[SubTaskStatus, MailEventType, SubTaskStatus | null]>([
    ['sent', 'delivered', 'delivered'],
    ['sent', 'open', 'opened'],
    ['delivered', 'click', 'clicked'],
    ['opened', 'delivered', null],
    ['clicked', 'open', null],
    ['delivered', 'delivered', null],
    ['sending', 'delivered', 'delivered'],
    ['unknown', 'accepted', 'sent'],
    ['unknown', 'open', 'opened'],
    ['sent', 'deferred', null],
    ['sent', 'soft_bounce', null],
    ['delivered', 'hard_bounce', 'bounced'],
    ['opened', 'complaint', 'complained'],
    ['clicked', 'unsubscribe', 'unsubscribed'],
    ['bounced', 'delivered', null],
    ['unsubscribed', 'complaint', 'complained'],
    ['complained', 'unsubscribe', null],
    ['bounced', 'complaint', 'complained'],
    ['complained', 'hard_bounce', null],
    ['pending', 'delivered', null],
    ['failed', 'open', null],
    ['cancelled', 'click', null],
    ['skipped', 'hard_bounce', null],
  ])('%s + %s → %s', (from, event, to) => {
    expect(progressSubTask(from, event)).toBe(to);
  });

  it('applies any order of the same events to one final state', () => {
    const events: MailEventType[] = ['delivered', 'open', 'click', 'open', 'delivered'];
    const permutations = [
      events,
      [...events].reverse(),
      ['click', 'delivered', 'open', 'delivered', 'open'] as MailEventType[],
    ];
    for (const order of permutations) {
      let status: SubTaskStatus = 'sent';
      for (const e of order) status = progressSubTask(status, e) ?? status;
      expect(status).toBe('clicked');
    }
  });

  it('ends a mail the same way whichever of two endings arrives first', () => {
    const endings: MailEventType[] = ['delivered', 'unsubscribe', 'complaint'];
    for (const order of [
      endings,
      [...endings].reverse(),
      ['complaint', 'delivered', 'unsubscribe'] as MailEventType[],
    ]) {
      let status: SubTaskStatus = 'sent';
      for (const e of order) status = progressSubTask(status, e) ?? status;
      expect(status).toBe('complained');
    }
  });

  it('dates the implied steps', () => {
    expect(impliedSteps('opened')).toEqual(['sent', 'delivered', 'opened']);
    expect(impliedSteps('bounced')).toEqual(['sent']);
  });

  it('suppresses contacts on hard bounce, complaint and unsubscribe only', () => {
    expect(contactSuppression('hard_bounce')).toBe('bounced');
    expect(contactSuppression('soft_bounce')).toBeNull();
    expect(contactSuppression('open')).toBeNull();
  });
});
