import type { MailEventType } from '@edm/domain';
import { hashDedupeKey } from './dedupe-key';
import {
  asIdString,
  asNonEmptyString,
  asRecord,
  correlationIds,
  dateFromEpochMillis,
  normaliseMessageId,
  normaliseRecipient,
  toStringRecord,
  uniqueIds,
  type JsonRecord,
} from './event-fields';
import type { ParsedMailEvent, ParseWebhookResult } from './parsed-mail-event';
import { parseJsonSafely } from './safe-json';
import { collectEntries, entryEvents, entryRejected, type EntryOutcome } from './webhook-entries';

/**
 * Status callbacks carry `status.message_status`, user responses `response.event`; third-party
 * senders also post both flat (`message_status` + `status_data`, `event` + `response_data`).
 */
const TYPE_BY_RAW: Readonly<Record<string, MailEventType | null>> = {
  target: 'accepted',
  sent: 'sent',
  delivered: 'delivered',
  soft_bounce: 'soft_bounce',
  invalid_email: 'hard_bounce',
  open: 'open',
  click: 'click',
  unsubscribe: 'unsubscribe',
  report_spam: 'complaint',
  // Inbound mail, not about a message we sent.
  route: null,
  reply: null,
};

/** invalid_email sub-statuses from the delivery-response API docs. */
const SUB_STATUS_LABELS: Readonly<Record<string, string>> = {
  '401': 'Invalid-Blacklist',
  '402': 'Invalid-Unsubscribe',
  '403': 'Invalid-Server Error',
  '404': 'Invalid-Format Error',
  '405': 'Invalid-IP Rejection',
  '406': 'Invalid-Not Exist',
  '407': 'Invalid-Junk Mail',
  '408': 'Invalid-Rejected',
  '409': 'Invalid-Others',
  '503': 'Soft bounce-Server Error',
};

/** Blacklist and unsubscribe: EngageLab refused because the address is already suppressed. */
const SUPPRESSION_SUB_STATUSES = new Set(['401', '402']);

const FAILURE_TYPES = new Set<MailEventType | null>(['soft_bounce', 'hard_bounce', 'deferred']);

/** `itime` is documented in ms; a value below 1e11 can only be seconds (ms would predate 1974). */
const engagelabTime = (value: unknown): Date | undefined => {
  const date = dateFromEpochMillis(value);
  return date !== undefined && date.getTime() < 1e11 ? new Date(date.getTime() * 1000) : date;
};

const customArgsOf = (value: unknown): Record<string, string> => {
  if (typeof value !== 'string') return toStringRecord(value);
  const parsed = parseJsonSafely(value);
  return parsed.ok ? toStringRecord(parsed.value) : {};
};

const stringsOf = (value: unknown): string[] =>
  (Array.isArray(value) ? value : [value]).filter((v): v is string => asNonEmptyString(v) !== undefined);

/** email_id = `<message_id><index>$<recipient>`: the recipient is everything after the first '$'. */
const recipientOfEmailId = (emailId: string): string | undefined => {
  const dollar = emailId.indexOf('$');
  return dollar < 0 ? undefined : asNonEmptyString(emailId.slice(dollar + 1));
};

/** "402 Invalid-Unsubscribe: <provider message>", whichever parts are present. */
const failureReason = (subStatus: string | undefined, message: string | undefined): string | undefined => {
  const label =
    subStatus === undefined
      ? undefined
      : `${subStatus} ${Object.hasOwn(SUB_STATUS_LABELS, subStatus) ? SUB_STATUS_LABELS[subStatus] : ''}`.trim();
  return [label, message].filter((part): part is string => part !== undefined).join(': ') || undefined;
};

const locateTypeAndData = (event: JsonRecord): { rawType: string; data: JsonRecord } | undefined => {
  const status = asRecord(event.status);
  const response = asRecord(event.response);
  const statusType = asNonEmptyString(status?.message_status);
  if (statusType !== undefined) return { rawType: statusType, data: asRecord(status?.status_data) ?? {} };
  const responseType = asNonEmptyString(response?.event);
  if (responseType !== undefined)
    return { rawType: responseType, data: asRecord(response?.response_data) ?? {} };
  const flatStatus = asNonEmptyString(event.message_status);
  if (flatStatus !== undefined) return { rawType: flatStatus, data: asRecord(event.status_data) ?? {} };
  const flatResponse = asNonEmptyString(event.event);
  if (flatResponse !== undefined) return { rawType: flatResponse, data: asRecord(event.response_data) ?? {} };
  return undefined;
};

const parseEngagelabEvent = (value: unknown): EntryOutcome => {
  const event = asRecord(value);
  if (event === undefined) return entryRejected('EngageLab event is not a JSON object');
  const located = locateTypeAndData(event);
  if (located === undefined) {
    return entryRejected('EngageLab event has neither status.message_status nor response.event');
  }
  const { rawType, data } = located;
  const field = (key: string): unknown => event[key] ?? data[key];

  const occurredAt = engagelabTime(field('itime'));
  if (occurredAt === undefined) return entryRejected('EngageLab event has no valid itime');

  const type = Object.hasOwn(TYPE_BY_RAW, rawType) ? TYPE_BY_RAW[rawType] : null;
  const messageId = normaliseMessageId(field('message_id'));
  const emailIds = uniqueIds([...stringsOf(data.email_ids), ...stringsOf(field('email_id'))]);
  const customArgs = customArgsOf(field('custom_args'));
  const subStatus = asIdString(data.sub_status);
  const reason = FAILURE_TYPES.has(type)
    ? failureReason(subStatus, asNonEmptyString(data.message) ?? asNonEmptyString(data.reason))
    : undefined;

  const addressed = stringsOf(event.to ?? data.to);
  const recipients = addressed.length > 0 ? addressed : stringsOf(data.tos);
  const fromEmailIds = emailIds.map(recipientOfEmailId).filter((r): r is string => r !== undefined);
  const perRecipient: Array<string | undefined> =
    recipients.length > 0 ? recipients : fromEmailIds.length > 0 ? fromEmailIds : [undefined];

  const events = perRecipient.map((rawRecipient): ParsedMailEvent => {
    const recipient = normaliseRecipient(rawRecipient);
    const emailId =
      emailIds.find((id) => recipient !== undefined && id.toLowerCase().endsWith(`$${recipient}`)) ??
      (perRecipient.length === 1 && emailIds.length === 1 ? emailIds[0] : undefined) ??
      (messageId !== undefined && rawRecipient !== undefined
        ? `${messageId}0$${rawRecipient.trim()}`
        : undefined);
    return {
      provider: 'engagelab',
      rawType,
      type,
      recipient,
      occurredAt,
      providerMessageId: messageId ?? emailId,
      messageIdCandidates: uniqueIds([emailId, messageId]),
      ...correlationIds(customArgs),
      customArgs: { ...customArgs },
      url: type === 'click' ? asNonEmptyString(field('url')) : undefined,
      reason,
      suppression:
        rawType === 'invalid_email' && subStatus !== undefined && SUPPRESSION_SUB_STATUSES.has(subStatus),
      dedupeKey: hashDedupeKey('engagelab', perRecipient.length === 1 ? value : { event: value, recipient }),
    };
  });
  return entryEvents(...events);
};

/** EngageLab posts one event per request; an array of them is read entry by entry. */
export const parseEngagelabWebhook = (body: unknown): ParseWebhookResult =>
  collectEntries(Array.isArray(body) ? body.map(parseEngagelabEvent) : [parseEngagelabEvent(body)]);
