import type { MailEventType } from '@edm/domain';
import { z } from 'zod';
import { hashDedupeKey, idDedupeKey } from './dedupe-key';
import {
  asNonEmptyString,
  correlationIds,
  dateFromIso,
  describeIssue,
  normaliseMessageId,
  normaliseRecipient,
  toStringRecord,
  uniqueIds,
} from './event-fields';
import type { ParseWebhookResult } from './parsed-mail-event';

/** Classify on RecordType / Type names: TypeCodes differ between Postmark's own documents. */
const TYPE_BY_BOUNCE_TYPE: Readonly<Record<string, MailEventType>> = {
  HardBounce: 'hard_bounce',
  BadEmailAddress: 'hard_bounce',
  SoftBounce: 'soft_bounce',
  DnsError: 'soft_bounce',
  Blocked: 'soft_bounce',
  // "Message delayed": Postmark keeps trying.
  Transient: 'deferred',
  SpamComplaint: 'complaint',
  Unsubscribe: 'unsubscribe',
};

/** Why Postmark stopped sending to an address (SubscriptionChange.SuppressionReason). */
const TYPE_BY_SUPPRESSION_REASON: Readonly<Record<string, MailEventType>> = {
  HardBounce: 'hard_bounce',
  SpamComplaint: 'complaint',
  ManualSuppression: 'unsubscribe',
};

const TIME_FIELD_BY_RECORD_TYPE: Readonly<Record<string, string>> = {
  Delivery: 'DeliveredAt',
  Bounce: 'BouncedAt',
  SpamComplaint: 'BouncedAt',
  Open: 'ReceivedAt',
  Click: 'ReceivedAt',
  SubscriptionChange: 'ChangedAt',
};
const TIME_FIELDS = ['DeliveredAt', 'BouncedAt', 'ReceivedAt', 'ChangedAt'];

const postmarkEventSchema = z.looseObject({ RecordType: z.string().min(1) });

const lookup = <T>(table: Readonly<Record<string, T>>, key: unknown): T | undefined =>
  typeof key === 'string' && Object.hasOwn(table, key) ? table[key] : undefined;

/**
 * Bounce IDs exceed 2^53 (e.g. 4323372036854775807), which JSON.parse rounds; recover the digits
 * from the raw body when the parsed number is no longer exact and the body holds exactly one "ID".
 */
const exactRecordId = (parsed: unknown, rawBody: string): string | undefined => {
  if (typeof parsed === 'string') return asNonEmptyString(parsed);
  if (typeof parsed !== 'number' || !Number.isInteger(parsed)) return undefined;
  if (Number.isSafeInteger(parsed)) return String(parsed);
  const matches = [...rawBody.matchAll(/"ID"\s*:\s*(-?\d+)/g)];
  return matches.length === 1 ? matches[0][1] : undefined;
};

const typeOf = (recordType: string, event: Record<string, unknown>): MailEventType | null => {
  switch (recordType) {
    case 'Delivery':
      return 'delivered';
    case 'Open':
      return 'open';
    case 'Click':
      return 'click';
    case 'SpamComplaint':
      return 'complaint';
    case 'Bounce':
      return lookup(TYPE_BY_BOUNCE_TYPE, event.Type) ?? null;
    case 'SubscriptionChange':
      // SuppressSending false is a reactivation, which has no normalised type.
      return event.SuppressSending === true
        ? (lookup(TYPE_BY_SUPPRESSION_REASON, event.SuppressionReason) ?? null)
        : null;
    default:
      return null;
  }
};

export const parsePostmarkWebhook = (body: unknown, rawBody: string): ParseWebhookResult => {
  const parsed = postmarkEventSchema.safeParse(body);
  if (!parsed.success) return { kind: 'invalid', reason: `Postmark body ${describeIssue(parsed.error)}` };
  const event = parsed.data;
  const timeField = lookup(TIME_FIELD_BY_RECORD_TYPE, event.RecordType);
  const occurredAt = [timeField, ...TIME_FIELDS]
    .map((field) => (field === undefined ? undefined : dateFromIso(event[field])))
    .find((date) => date !== undefined);
  if (occurredAt === undefined)
    return { kind: 'invalid', reason: `Postmark ${event.RecordType} has no valid time` };

  const type = typeOf(event.RecordType, event);
  const messageId = normaliseMessageId(event.MessageID);
  const customArgs = toStringRecord(event.Metadata);
  const recordId = exactRecordId(event.ID, rawBody);

  return {
    kind: 'events',
    rejected: [],
    events: [
      {
        provider: 'postmark',
        providerEventId: recordId,
        rawType: event.RecordType,
        type,
        recipient: normaliseRecipient(event.Recipient ?? event.Email),
        occurredAt,
        providerMessageId: messageId,
        messageIdCandidates: uniqueIds([messageId]),
        ...correlationIds(customArgs),
        customArgs,
        url: type === 'click' ? asNonEmptyString(event.OriginalLink) : undefined,
        reason:
          event.RecordType === 'SubscriptionChange'
            ? asNonEmptyString(event.SuppressionReason)
            : event.RecordType === 'Bounce'
              ? (asNonEmptyString(event.Description) ?? asNonEmptyString(event.Details))
              : undefined,
        // A SubscriptionChange reports a suppression; the bounce or complaint behind it has its own event.
        suppression: event.RecordType === 'SubscriptionChange' && event.SuppressSending === true,
        dedupeKey: recordId
          ? idDedupeKey('postmark', event.RecordType, recordId)
          : hashDedupeKey('postmark', body),
      },
    ],
  };
};
