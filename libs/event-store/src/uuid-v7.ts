import { randomFillSync } from 'node:crypto';

let lastMs = 0;
let sequence = 0;

/** Random bytes drawn 4 KiB at a time: one call into the system's generator per 256 ids. */
const pool = Buffer.alloc(4096);
let poolOffset = pool.length;

/** The offset in `pool` of `size` fresh random bytes, each read once. */
function random(size: number): number {
  if (poolOffset + size > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  poolOffset += size;
  return poolOffset - size;
}

/** Two lower-case hex digits for each byte value. */
const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));

/** The hex of `count` random bytes from the pool. */
function randomHex(count: number): string {
  const at = random(count);
  let hex = '';
  for (let i = at; i < at + count; i++) hex += HEX[pool[i]];
  return hex;
}

/**
 * RFC 9562 UUID version 7: time-ordered, so ids sort roughly by creation across processes. The
 * 48-bit millisecond stamp, then the version and a 12-bit sequence that keeps ids of the same
 * millisecond in creation order (starting at a random value below 2,048), then the variant and
 * 62 random bits. Built as text digit by digit: it runs for every stored webhook and event.
 */
export function uuidv7(): string {
  let ms = Date.now();
  if (ms <= lastMs) {
    sequence = (sequence + 1) & 0xfff;
    if (sequence === 0) lastMs += 1;
    ms = lastMs;
  } else {
    lastMs = ms;
    const at = random(2);
    sequence = ((pool[at] << 8) | pool[at + 1]) & 0x7ff;
  }
  const high = Math.floor(ms / 0x1000000);
  const low = ms % 0x1000000;
  const variant = random(1);
  return (
    HEX[(high >>> 16) & 0xff] +
    HEX[(high >>> 8) & 0xff] +
    HEX[high & 0xff] +
    HEX[(low >>> 16) & 0xff] +
    '-' +
    HEX[(low >>> 8) & 0xff] +
    HEX[low & 0xff] +
    '-' +
    HEX[0x70 | (sequence >> 8)] +
    HEX[sequence & 0xff] +
    '-' +
    HEX[(pool[variant] & 0x3f) | 0x80] +
    randomHex(1) +
    '-' +
    randomHex(6)
  );
}
