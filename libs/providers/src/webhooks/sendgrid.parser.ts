import type { MailEventType } from '@edm/domain';
import { z } from 'zod';
import { hashDedupeKey, idDedupeKey } from './dedupe-key';
import {
  asNonEmptyString,
  correlationIds,
  dateFromEpochSeconds,
  describeIssue,
  normaliseMessageId,
  normaliseRecipient,
  toStringRecord,
  uniqueIds,
} from './event-fields';
import type { ParseWebhookResult } from './parsed-mail-event';
import { collectEntries, entryEvents, entryRejected, type EntryOutcome } from './webhook-entries';

/** SendGrid's own keys; every other top-level key of an event is a custom (unique) arg. */
const SENDGRID_FIELDS = new Set([
  'email',
  'timestamp',
  'smtp-id',
  'event',
  'category',
  'sg_event_id',
  'sg_message_id',
  'useragent',
  'ip',
  'url',
  'url_offset',
  'reason',
  'status',
  'response',
  'attempt',
  'tls',
  'type',
  'asm_group_id',
  'pool',
  'send_at',
  'newsletter',
  'post_type',
  'sg_user_id',
  'cert_err',
  'bounce_classification',
]);

const isSendgridField = (key: string): boolean =>
  SENDGRID_FIELDS.has(key) || key.startsWith('sg_') || key.startsWith('marketing_campaign_');

const TYPE_BY_EVENT: Readonly<Record<string, MailEventType | null>> = {
  processed: 'accepted',
  deferred: 'deferred',
  delivered: 'delivered',
  open: 'open',
  click: 'click',
  bounce: 'hard_bounce',
  // Never attempted, so it cannot be delivered later either.
  dropped: 'hard_bounce',
  spamreport: 'complaint',
  unsubscribe: 'unsubscribe',
  group_unsubscribe: 'unsubscribe',
  // A resubscribe must never be counted as an unsubscribe.
  group_resubscribe: null,
};

/** Dropped because the address is already on a SendGrid suppression list. */
const SUPPRESSED_DROP_REASONS = new Set([
  'bounced address',
  'unsubscribed address',
  'spam reporting address',
  'invalid',
]);

const FAILURE_TYPES = new Set<MailEventType | null>(['soft_bounce', 'hard_bounce', 'deferred']);

const sendgridEventSchema = z.looseObject({
  event: z.string().min(1),
  timestamp: z.union([z.number(), z.string()]),
});

const typeOf = (event: string, bounceType: unknown): MailEventType | null => {
  // "blocked" is documented as a temporary refusal by the receiving server, unlike "bounce".
  if (event === 'bounce' && bounceType === 'blocked') return 'soft_bounce';
  return Object.hasOwn(TYPE_BY_EVENT, event) ? TYPE_BY_EVENT[event] : null;
};

const parseSendgridEvent = (value: unknown): EntryOutcome => {
  const parsed = sendgridEventSchema.safeParse(value);
  if (!parsed.success) return entryRejected(`SendGrid event ${describeIssue(parsed.error)}`);
  const entry = parsed.data;
  const occurredAt = dateFromEpochSeconds(entry.timestamp);
  if (occurredAt === undefined) return entryRejected('SendGrid event has no valid timestamp');

  const type = typeOf(entry.event, entry.type);
  const customArgs = toStringRecord(
    Object.fromEntries(Object.entries(entry).filter(([key]) => !isSendgridField(key))),
  );
  const sgMessageId = normaliseMessageId(entry.sg_message_id);
  const smtpId = normaliseMessageId(entry['smtp-id']);
  // sg_message_id = <X-Message-Id returned at send time>.<filter/relay suffix>.
  const prefix = sgMessageId?.split('.')[0];
  const beforeFilter = sgMessageId?.replace(/\.filter.*$/, '');
  const smtpLocalPart = smtpId?.split('@')[0];
  const sgEventId = asNonEmptyString(entry.sg_event_id);
  const reasonText = asNonEmptyString(entry.reason) ?? asNonEmptyString(entry.response);

  return entryEvents({
    provider: 'sendgrid',
    providerEventId: sgEventId,
    rawType: entry.event,
    type,
    recipient: normaliseRecipient(entry.email),
    occurredAt,
    providerMessageId: prefix || smtpLocalPart,
    messageIdCandidates: uniqueIds([sgMessageId, beforeFilter, prefix, smtpLocalPart]),
    ...correlationIds(customArgs),
    headerMessageId: smtpId,
    customArgs,
    url: type === 'click' ? asNonEmptyString(entry.url) : undefined,
    reason: FAILURE_TYPES.has(type) ? reasonText : undefined,
    suppression:
      entry.event === 'dropped' && SUPPRESSED_DROP_REASONS.has((reasonText ?? '').trim().toLowerCase()),
    // The event type is part of the key so that placeholder ids (as in SendGrid's own docs) never
    // collapse different events of one batch; real sg_event_ids are unique anyway.
    dedupeKey: sgEventId ? idDedupeKey('sendgrid', sgEventId, entry.event) : hashDedupeKey('sendgrid', value),
  });
};

/** SendGrid always posts a JSON array of events. */
export const parseSendgridWebhook = (body: unknown): ParseWebhookResult =>
  Array.isArray(body)
    ? collectEntries(body.map(parseSendgridEvent))
    : { kind: 'invalid', reason: 'SendGrid body is not a JSON array' };
