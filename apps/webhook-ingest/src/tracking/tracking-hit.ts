import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { ParseWebhookResult } from '@edm/providers';

/** What a tracking endpoint stores: our own small JSON, read back like a provider's webhook. */
export const trackingHitSchema = z.object({
  kind: z.enum(['unsubscribe']),
  trackingId: z.string().min(1).max(64),
  at: z.string().datetime(),
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
        type: 'unsubscribe',
        occurredAt: new Date(hit.at),
        messageIdCandidates: [],
        trackingId: hit.trackingId,
        customArgs: {},
        suppression: true,
        // One unsubscribe per mail: repeated clicks of the same link are duplicates.
        dedupeKey: `tracking:${hit.kind}:${createHash('sha256').update(hit.trackingId).digest('hex')}`,
      },
    ],
  };
}
