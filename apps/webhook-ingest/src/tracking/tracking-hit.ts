import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { ParseWebhookResult } from '@edm/providers';

/** What a tracking endpoint stores: our own small JSON, read back like a provider's webhook. */
export const trackingHitSchema = z.object({
  kind: z.enum(['unsubscribe', 'open', 'click']),
  trackingId: z.string().min(1).max(64),
  at: z.string().datetime(),
  url: z.string().max(4_096).optional(),
});
export type TrackingHit = z.infer<typeof trackingHitSchema>;

export function parseTrackingHit(raw: string): ParseWebhookResult {
  let hit: TrackingHit;
  try {
    hit = trackingHitSchema.parse(JSON.parse(raw));
  } catch (error) {
    return { kind: 'invalid', reason: `tracking hit is malformed: ${String(error).slice(0, 200)}` };
  }
  return {
    kind: 'events',
    rejected: [],
    events: [
      {
        provider: 'sandbox',
        rawType: `tracking:${hit.kind}`,
        type: hit.kind,
        occurredAt: new Date(hit.at),
        messageIdCandidates: [],
        trackingId: hit.trackingId,
        customArgs: {},
        ...(hit.url ? { url: hit.url } : {}),
        suppression: hit.kind === 'unsubscribe',
        // One unsubscribe per mail; every open and click is an event of its own.
        dedupeKey: `tracking:${hit.kind}:${createHash('sha256')
          .update(
            hit.kind === 'unsubscribe' ? hit.trackingId : `${hit.trackingId}\n${hit.at}\n${hit.url ?? ''}`,
          )
          .digest('hex')}`,
      },
    ],
  };
}
