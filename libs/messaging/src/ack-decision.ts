/** What a handler decided about one message. `term` is only for what can never succeed. */
export type AckDecision =
  { kind: 'ack' } | { kind: 'nak'; delayMs: number; reason: string } | { kind: 'term'; reason: string };

export const ack = (): AckDecision => ({ kind: 'ack' });
export const nak = (delayMs: number, reason: string): AckDecision => ({ kind: 'nak', delayMs, reason });
export const term = (reason: string): AckDecision => ({ kind: 'term', reason });

/** Redelivery backoff: 1 s, 2 s, 4 s … capped at a minute. */
export const redeliveryDelay = (deliveryCount: number): number =>
  Math.min(60_000, 1_000 * 2 ** Math.max(0, deliveryCount - 1));
