import { isMailEventType } from '@edm/domain';
import { z } from 'zod';
import { idDedupeKey } from './dedupe-key';
import {
  dateFromEpochMillis,
  describeIssue,
  normaliseMessageId,
  normaliseRecipient,
  uniqueIds,
} from './event-fields';
import type { ParseWebhookResult } from './parsed-mail-event';
import { collectEntries, entryEvents, entryRejected, type EntryOutcome } from './webhook-entries';

/** Our own load-test provider: `{ events: [{ eventId, type, email, timestamp (ms), ... }] }`. */
const sandboxEventSchema = z.object({
  eventId: z.string().min(1),
  type: z.string().min(1),
  email: z.string().min(1),
  timestamp: z.number(),
  trackingId: z.string().min(1).optional(),
  messageId: z.string().min(1).optional(),
  taskId: z.string().min(1).optional(),
  url: z.string().min(1).optional(),
});

const sandboxBodySchema = z.object({ events: z.array(z.unknown()) });

const parseSandboxEvent = (value: unknown): EntryOutcome => {
  const parsed = sandboxEventSchema.safeParse(value);
  if (!parsed.success) return entryRejected(`sandbox event ${describeIssue(parsed.error)}`);
  const event = parsed.data;
  const occurredAt = dateFromEpochMillis(event.timestamp);
  if (occurredAt === undefined) return entryRejected('sandbox event has no valid timestamp');
  const messageId = normaliseMessageId(event.messageId);
  return entryEvents({
    provider: 'sandbox',
    providerEventId: event.eventId,
    rawType: event.type,
    type: isMailEventType(event.type) ? event.type : null,
    recipient: normaliseRecipient(event.email),
    occurredAt,
    providerMessageId: messageId,
    messageIdCandidates: uniqueIds([messageId]),
    trackingId: event.trackingId,
    taskId: event.taskId,
    customArgs: {},
    url: event.url,
    suppression: false,
    dedupeKey: idDedupeKey('sandbox', event.eventId),
  });
};

export const parseSandboxWebhook = (body: unknown): ParseWebhookResult => {
  const parsed = sandboxBodySchema.safeParse(body);
  if (!parsed.success) return { kind: 'invalid', reason: `sandbox body ${describeIssue(parsed.error)}` };
  return collectEntries(parsed.data.events.map(parseSandboxEvent));
};
