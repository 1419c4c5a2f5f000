import type { MailEventType } from '@edm/domain';
import { z } from 'zod';
import { hashDedupeKey, idDedupeKey } from './dedupe-key';
import {
  asNonEmptyString,
  asRecord,
  correlationIds,
  dateFromIso,
  describeIssue,
  normaliseMessageId,
  normaliseRecipient,
  TRACKING_ID_HEADER,
  uniqueIds,
  type JsonRecord,
} from './event-fields';
import type { ParsedMailEvent, ParseWebhookResult } from './parsed-mail-event';
import { parseJsonSafely } from './safe-json';

/**
 * SES events arrive inside an SNS envelope whose `Message` is the SES record as a JSON string
 * (or bare, when the subscription uses raw message delivery). Both the event-publishing format
 * (`eventType`) and the identity-notification format (`notificationType`) are read.
 */

const sesRecordSchema = z.looseObject({
  mail: z.looseObject({ messageId: z.string().min(1) }),
});

interface RecipientEntry {
  address: unknown;
  reason?: string;
}

interface Classified {
  type: MailEventType | null;
  recipients: RecipientEntry[];
  suppression: boolean;
  url?: string;
  reason?: string;
}

const recordsOf = (value: unknown): JsonRecord[] =>
  Array.isArray(value) ? value.map(asRecord).filter((r): r is JsonRecord => r !== undefined) : [];

const joinReason = (...parts: unknown[]): string | undefined =>
  parts
    .map(asNonEmptyString)
    .filter((p): p is string => p !== undefined)
    .join(': ') || undefined;

/** `DeliveryDelay` → `deliveryDelay`, `Rendering Failure` → `renderingFailure`. */
const detailKeyOf = (rawType: string): string => {
  const words = rawType.split(/\s+/).filter(Boolean);
  const key = words.map((w, i) => (i === 0 ? w[0].toLowerCase() : w[0].toUpperCase()) + w.slice(1)).join('');
  return key === 'renderingFailure' ? 'failure' : key;
};

const optedOutTopics = (preferences: JsonRecord | undefined): Set<string> =>
  new Set(
    recordsOf(preferences?.topicSubscriptionStatus)
      .filter((t) => t.subscriptionStatus === 'OptOut')
      .map((t) => String(t.topicName)),
  );

const classify = (rawType: string, detail: JsonRecord, destinations: unknown[]): Classified => {
  // Opens, clicks and subscription changes name no recipient; with several destinations it is unknown.
  const soleDestination: RecipientEntry[] = [
    { address: destinations.length === 1 ? destinations[0] : undefined },
  ];
  const everyDestination: RecipientEntry[] = destinations.map((address) => ({ address }));
  switch (rawType) {
    case 'Send':
      return { type: 'accepted', recipients: everyDestination, suppression: false };
    case 'Delivery': {
      const recipients = Array.isArray(detail.recipients) ? detail.recipients : destinations;
      return {
        type: 'delivered',
        recipients: recipients.map((address) => ({ address })),
        suppression: false,
      };
    }
    case 'Bounce': {
      const subType = asNonEmptyString(detail.bounceSubType);
      const kind = [asNonEmptyString(detail.bounceType), subType].filter(Boolean).join('/');
      return {
        // Transient and Undetermined bounces may still deliver later; only Permanent is final.
        type: detail.bounceType === 'Permanent' ? 'hard_bounce' : 'soft_bounce',
        recipients: recordsOf(detail.bouncedRecipients).map((r) => ({
          address: r.emailAddress,
          reason: joinReason(kind, r.status, r.diagnosticCode),
        })),
        // SES did not attempt delivery: the address is on a suppression list already.
        suppression: subType === 'Suppressed' || subType === 'OnAccountSuppressionList',
      };
    }
    case 'Complaint':
      return {
        type: 'complaint',
        recipients: recordsOf(detail.complainedRecipients).map((r) => ({
          address: r.emailAddress,
          reason: joinReason(detail.complaintFeedbackType),
        })),
        suppression: false,
      };
    case 'DeliveryDelay':
      return {
        type: 'deferred',
        recipients: recordsOf(detail.delayedRecipients).map((r) => ({
          address: r.emailAddress,
          reason: joinReason(detail.delayType, r.status, r.diagnosticCode),
        })),
        suppression: false,
      };
    case 'Open':
      return { type: 'open', recipients: soleDestination, suppression: false };
    case 'Click':
      return {
        type: 'click',
        recipients: soleDestination,
        suppression: false,
        url: asNonEmptyString(detail.link),
      };
    case 'Subscription': {
      const next = asRecord(detail.newTopicPreferences);
      const previouslyOut = optedOutTopics(asRecord(detail.oldTopicPreferences));
      const newlyOut = [...optedOutTopics(next)].some((topic) => !previouslyOut.has(topic));
      return {
        type: next?.unsubscribeAll === true || newlyOut ? 'unsubscribe' : null,
        recipients: soleDestination,
        suppression: false,
      };
    }
    default:
      // Reject, Rendering Failure and future types: stored and counted, no normalised meaning.
      return {
        type: null,
        recipients: everyDestination.length > 0 ? everyDestination : soleDestination,
        suppression: false,
        reason: joinReason(detail.reason, detail.errorMessage),
      };
  }
};

/** SES tags are `name → [values]`; `ses:*` are system tags, not ours. */
const customTagsOf = (tags: unknown): Record<string, string> => {
  const entries: Array<[string, string]> = [];
  for (const [name, values] of Object.entries(asRecord(tags) ?? {})) {
    if (name.startsWith('ses:') || name.startsWith('aws:')) continue;
    const list = (Array.isArray(values) ? values : [values]).filter(
      (v): v is string => typeof v === 'string',
    );
    if (list.length > 0) entries.push([name, list.join(',')]);
  }
  return Object.fromEntries(entries);
};

const mailHeader = (mail: JsonRecord, name: string): string | undefined => {
  const wanted = name.toLowerCase();
  const found = recordsOf(mail.headers).find(
    (h) => typeof h.name === 'string' && h.name.toLowerCase() === wanted,
  );
  return asNonEmptyString(found?.value);
};

interface SnsContext {
  snsMessageId?: string;
  snsTimestamp?: unknown;
}

const parseSesRecord = (value: unknown, sns: SnsContext): ParseWebhookResult => {
  const parsed = sesRecordSchema.safeParse(value);
  if (!parsed.success) return { kind: 'invalid', reason: `SES record ${describeIssue(parsed.error)}` };
  const record = parsed.data;
  const rawType = asNonEmptyString(record.eventType) ?? asNonEmptyString(record.notificationType);
  if (rawType === undefined)
    return { kind: 'invalid', reason: 'SES record has no eventType or notificationType' };

  const mail = record.mail;
  const detailKey = detailKeyOf(rawType);
  const detail = (Object.hasOwn(record, detailKey) ? asRecord(record[detailKey]) : undefined) ?? {};
  const occurredAt =
    dateFromIso(detail.timestamp) ?? dateFromIso(mail.timestamp) ?? dateFromIso(sns.snsTimestamp);
  if (occurredAt === undefined) return { kind: 'invalid', reason: 'SES record has no valid timestamp' };

  const destinations = Array.isArray(mail.destination) ? mail.destination : [];
  const classified = classify(rawType, detail, destinations);
  const messageId = normaliseMessageId(mail.messageId);
  const headerMessageId = normaliseMessageId(
    asRecord(mail.commonHeaders)?.messageId ?? mailHeader(mail, 'Message-ID'),
  );
  const customArgs = customTagsOf(mail.tags);
  const ids = correlationIds(customArgs, mailHeader(mail, TRACKING_ID_HEADER));

  const events = classified.recipients.map((entry): ParsedMailEvent => {
    const recipient = normaliseRecipient(entry.address);
    return {
      provider: 'ses',
      providerEventId: sns.snsMessageId,
      rawType,
      type: classified.type,
      recipient,
      occurredAt,
      providerMessageId: messageId,
      messageIdCandidates: uniqueIds([messageId]),
      ...ids,
      headerMessageId,
      customArgs: { ...customArgs },
      url: classified.url,
      reason: entry.reason ?? classified.reason,
      suppression: classified.suppression,
      // One SNS notification fans out to several recipients, so the recipient is part of the key.
      dedupeKey: sns.snsMessageId
        ? idDedupeKey('ses', sns.snsMessageId, recipient ?? '')
        : hashDedupeKey('ses', { record: value, recipient }),
    };
  });
  return { kind: 'events', events, rejected: [] };
};

export const parseSesWebhook = (body: unknown): ParseWebhookResult => {
  const envelope = asRecord(body);
  if (envelope === undefined) return { kind: 'invalid', reason: 'SNS body is not a JSON object' };
  const snsType = envelope.Type;

  if (snsType === 'SubscriptionConfirmation' || snsType === 'UnsubscribeConfirmation') {
    const subscribeUrl = asNonEmptyString(envelope.SubscribeURL);
    const topicArn = asNonEmptyString(envelope.TopicArn);
    if (subscribeUrl === undefined || topicArn === undefined) {
      return { kind: 'invalid', reason: `SNS ${snsType} lacks SubscribeURL or TopicArn` };
    }
    return {
      kind: 'sns-subscription',
      messageType: snsType,
      subscribeUrl,
      topicArn,
      token: asNonEmptyString(envelope.Token),
    };
  }

  if (snsType === 'Notification') {
    if (typeof envelope.Message !== 'string')
      return { kind: 'invalid', reason: 'SNS Message is not a string' };
    const message = parseJsonSafely(envelope.Message);
    if (!message.ok)
      return { kind: 'invalid', reason: `SNS Message is not an SES record: ${message.reason}` };
    return parseSesRecord(message.value, {
      snsMessageId: asNonEmptyString(envelope.MessageId),
      snsTimestamp: envelope.Timestamp,
    });
  }

  // Raw message delivery: the SES record itself, without an envelope.
  if (snsType === undefined && ('eventType' in envelope || 'notificationType' in envelope)) {
    return parseSesRecord(envelope, {});
  }
  return {
    kind: 'invalid',
    reason: `unsupported SNS message type ${JSON.stringify(snsType) ?? 'undefined'}`,
  };
};
