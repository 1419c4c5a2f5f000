import type { MailEventType } from '@edm/domain';
import { z } from 'zod';
import { hashDedupeKey, idDedupeKey } from './dedupe-key';
import {
  asNonEmptyString,
  asRecord,
  correlationIds,
  dateFromEpochSeconds,
  describeIssue,
  normaliseMessageId,
  normaliseRecipient,
  toStringRecord,
  TRACKING_ID_HEADER,
  uniqueIds,
} from './event-fields';
import type { ParseWebhookResult } from './parsed-mail-event';

const TYPE_BY_EVENT: Readonly<Record<string, MailEventType | null>> = {
  accepted: 'accepted',
  delivered: 'delivered',
  opened: 'open',
  clicked: 'click',
  unsubscribed: 'unsubscribe',
  complained: 'complaint',
};

const mailgunBodySchema = z.looseObject({
  'event-data': z.looseObject({
    event: z.string().min(1),
    timestamp: z.union([z.number(), z.string()]),
  }),
});

const typeOf = (event: string, severity: unknown): MailEventType | null => {
  // Temporary failures are retried by Mailgun and must not suppress the address.
  if (event === 'failed') return severity === 'temporary' ? 'soft_bounce' : 'hard_bounce';
  return Object.hasOwn(TYPE_BY_EVENT, event) ? TYPE_BY_EVENT[event] : null;
};

/** Header names in `message.headers` are lower-case in practice; do not rely on it. */
const echoedHeader = (headers: Record<string, unknown>, name: string): string | undefined => {
  const wanted = name.toLowerCase();
  const key = Object.keys(headers).find((k) => k.toLowerCase() === wanted);
  return key === undefined ? undefined : asNonEmptyString(headers[key]);
};

export const parseMailgunWebhook = (body: unknown): ParseWebhookResult => {
  const parsed = mailgunBodySchema.safeParse(body);
  if (!parsed.success) return { kind: 'invalid', reason: `Mailgun body ${describeIssue(parsed.error)}` };
  const data = parsed.data['event-data'];
  const occurredAt = dateFromEpochSeconds(data.timestamp);
  if (occurredAt === undefined)
    return { kind: 'invalid', reason: 'Mailgun event-data has no valid timestamp' };

  const type = typeOf(data.event, data.severity);
  const messageHeaders = asRecord(asRecord(data.message)?.headers) ?? {};
  const messageId = normaliseMessageId(echoedHeader(messageHeaders, 'message-id'));
  // user-variables is documented both as {} and as [] when empty.
  const customArgs = toStringRecord(data['user-variables']);
  const deliveryStatus = asRecord(data['delivery-status']) ?? {};
  const failureReason = asNonEmptyString(data.reason);
  const eventId = asNonEmptyString(data.id);

  return {
    kind: 'events',
    rejected: [],
    events: [
      {
        provider: 'mailgun',
        providerEventId: eventId,
        rawType: data.event,
        type,
        recipient: normaliseRecipient(data.recipient),
        occurredAt,
        providerMessageId: messageId,
        messageIdCandidates: uniqueIds([messageId]),
        ...correlationIds(customArgs, echoedHeader(messageHeaders, TRACKING_ID_HEADER)),
        headerMessageId: messageId,
        customArgs,
        url: type === 'click' ? asNonEmptyString(data.url) : undefined,
        reason:
          data.event === 'failed'
            ? (asNonEmptyString(deliveryStatus.message) ??
              asNonEmptyString(deliveryStatus.description) ??
              failureReason)
            : undefined,
        // Mailgun's reasons suppress-bounce / -unsubscribe / -complaint: it did not even try.
        suppression: data.event === 'failed' && (failureReason?.startsWith('suppress-') ?? false),
        dedupeKey: eventId ? idDedupeKey('mailgun', eventId) : hashDedupeKey('mailgun', data),
      },
    ],
  };
};
