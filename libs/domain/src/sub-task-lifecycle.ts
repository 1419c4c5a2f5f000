import type { SubTaskStatus } from '@edm/events';
import { MailEventType } from './mail-event-type';

/** Steps of the happy path, in order; a status only ever moves to a later one. */
const STEP: Partial<Record<SubTaskStatus, number>> = {
  sending: 1,
  unknown: 1,
  sent: 2,
  delivered: 3,
  opened: 4,
  clicked: 5,
};

/** What a provider's event means for the sub-task, as the status it proves was reached. */
const REACHED: Partial<Record<MailEventType, SubTaskStatus>> = {
  accepted: 'sent',
  sent: 'sent',
  deferred: 'sent',
  soft_bounce: 'sent',
  delivered: 'delivered',
  open: 'opened',
  click: 'clicked',
  hard_bounce: 'bounced',
  complaint: 'complained',
  unsubscribe: 'unsubscribed',
};

/** The endings of a mail (and of a contact), weakest first. */
const ENDINGS: readonly string[] = ['bounced', 'unsubscribed', 'complained'];

/**
 * Whether `next` is an ending that outranks `current` (any status that is not an ending is
 * outranked): a complaint still counts after an unsubscribe, so where two endings arrive in either
 * order, or are applied by two workers at once, the result is the same.
 */
export function isStrongerEnding(next: string, current: string): boolean {
  const rank = ENDINGS.indexOf(next);
  return rank >= 0 && rank > ENDINGS.indexOf(current);
}

/**
 * SPEC 2.4, forward only. An open before its delivery implies the delivery; a late delivery after
 * the open changes nothing; a bounce, unsubscribe or complaint ends a mail that was sent, and only
 * a stronger ending moves an ended one; nothing moves a sub-task that never went out (pending,
 * failed, skipped, cancelled). Returns the new status, or null when the event changes nothing.
 */
export function progressSubTask(current: SubTaskStatus, event: MailEventType): SubTaskStatus | null {
  const reached = REACHED[event];
  if (!reached) return null;
  if (ENDINGS.includes(current)) return isStrongerEnding(reached, current) ? reached : null;
  const from = STEP[current];
  if (from === undefined) return null;
  if (ENDINGS.includes(reached)) return reached;
  return STEP[reached]! > from ? reached : null;
}

/** Timestamps a status implies, so an open that skipped delivery still dates the delivery. */
export function impliedSteps(to: SubTaskStatus): ('sent' | 'delivered' | 'opened' | 'clicked')[] {
  const order = ['sent', 'delivered', 'opened', 'clicked'] as const;
  const index = order.indexOf(to as (typeof order)[number]);
  return index < 0 ? ['sent'] : order.slice(0, index + 1);
}

/** The contact status an event imposes at once; soft bounces count up to a limit instead. */
export function contactSuppression(event: MailEventType): 'bounced' | 'complained' | 'unsubscribed' | null {
  return event === 'hard_bounce'
    ? 'bounced'
    : event === 'complaint'
      ? 'complained'
      : event === 'unsubscribe'
        ? 'unsubscribed'
        : null;
}
