/** The one vocabulary every provider's webhook event is normalised to (SPEC 3.3). */
export const MAIL_EVENT_TYPES = [
  'accepted',
  'sent',
  'delivered',
  'deferred',
  'soft_bounce',
  'hard_bounce',
  'complaint',
  'open',
  'click',
  'unsubscribe',
] as const;

export type MailEventType = (typeof MAIL_EVENT_TYPES)[number];

export const isMailEventType = (value: unknown): value is MailEventType =>
  typeof value === 'string' && (MAIL_EVENT_TYPES as readonly string[]).includes(value);
