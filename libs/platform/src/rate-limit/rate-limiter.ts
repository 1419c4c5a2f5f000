import { isIPv6 } from 'node:net';

export interface RateLimiterOptions {
  /** Tokens added per second; a request takes one. */
  perSecond: number;
  /** Bucket size: how many requests may arrive at once after a quiet spell. */
  burst: number;
  /** Most clients tracked at once; past it the least recently seen are forgotten. */
  maxClients: number;
  /** Milliseconds on a monotonic clock. */
  now: () => number;
}

export type RateLimitDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * One token bucket per client, in this process. Buckets are kept least recently seen first, so
 * the idle ones are at the front: a bucket idle long enough to be full again is the same as no
 * bucket and is dropped, and past `maxClients` the oldest are dropped even if not full (those
 * clients start over with a full bucket). Memory stays bounded whatever addresses arrive.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly refillMs: number;

  constructor(private readonly options: RateLimiterOptions) {
    if (!(options.perSecond > 0) || !(options.burst >= 1) || !(options.maxClients >= 1))
      throw new Error('a rate limit needs perSecond > 0, burst >= 1 and maxClients >= 1');
    this.refillMs = (options.burst / options.perSecond) * 1_000;
  }

  /** Clients currently tracked. */
  get size(): number {
    return this.buckets.size;
  }

  take(client: string): RateLimitDecision {
    const now = this.options.now();
    this.dropIdle(now);
    const { perSecond, burst } = this.options;
    const previous = this.buckets.get(client);
    const bucket: Bucket = previous
      ? {
          tokens: Math.min(burst, previous.tokens + (Math.max(0, now - previous.at) / 1_000) * perSecond),
          at: now,
        }
      : { tokens: burst, at: now };
    // Re-inserting moves the client to the back: the map stays ordered by last request.
    this.buckets.delete(client);
    this.buckets.set(client, bucket);
    while (this.buckets.size > this.options.maxClients)
      this.buckets.delete(this.buckets.keys().next().value as string);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { allowed: true };
    }
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / perSecond)) };
  }

  private dropIdle(now: number): void {
    for (const [client, bucket] of this.buckets) {
      if (now - bucket.at < this.refillMs) return;
      this.buckets.delete(client);
    }
  }
}

/**
 * The key a client is limited by: its IPv4 address, or the /64 of its IPv6 address (one
 * subscriber usually holds a whole /64, so single addresses would be free for the taking).
 */
export function clientKey(ip: string | undefined): string {
  if (!ip) return 'unknown';
  const address = ip.replace(/%.*$/, '');
  const mapped = /^::ffff:(\d{1,3}(\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1];
  if (!isIPv6(address)) return address;
  const groups = (part: string) =>
    part === '' ? [] : part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g]));
  const [head, tail] = address.split('::');
  const front = groups(head);
  const back = tail === undefined ? [] : groups(tail);
  const full = [...front, ...Array(8 - front.length - back.length).fill('0'), ...back];
  return `${full
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}
