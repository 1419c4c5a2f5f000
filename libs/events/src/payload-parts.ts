/**
 * Bytes of what one batch event lists (its sends, its provider events): far below NATS' default
 * 1 MB payload limit, with room for the envelope, so that the relay can always publish it.
 */
export const BATCH_EVENT_MAX_BYTES = 256 * 1024;

/**
 * Bytes of one event's data and metadata at most. The relay publishes every committed event to
 * NATS in order, and NATS refuses a message over its payload limit (1 MB by default): one such
 * event would stop every event after it. So none is stored: the event store refuses it (413).
 */
export const EVENT_MAX_BYTES = 768 * 1024;

/**
 * `items` in parts, in order, each listing at most `maxBytes` by `sizeOf` (an item larger than
 * that gets a part of its own). No part for no items.
 */
export function inPayloadParts<T>(
  items: readonly T[],
  sizeOf: (item: T) => number,
  maxBytes = BATCH_EVENT_MAX_BYTES,
): T[][] {
  const parts: T[][] = [];
  let part: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = sizeOf(item);
    if (part.length && bytes + size > maxBytes) {
      parts.push(part);
      part = [];
      bytes = 0;
    }
    part.push(item);
    bytes += size;
  }
  if (part.length) parts.push(part);
  return parts;
}
