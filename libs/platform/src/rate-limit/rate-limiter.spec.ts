import { clientKey, RateLimiter } from './rate-limiter';

/** A limiter on a clock the test moves by hand. */
const limiterAt = (options: { perSecond: number; burst: number; maxClients?: number }) => {
  const clock = { now: 0 };
  const limiter = new RateLimiter({ maxClients: 1_000, ...options, now: () => clock.now });
  const advance = (ms: number) => (clock.now += ms);
  const allowed = (client: string, times: number) =>
    Array.from({ length: times }, () => limiter.take(client).allowed).filter(Boolean).length;
  return { limiter, advance, allowed };
};

describe('RateLimiter', () => {
  it('lets a full burst through at once, then refuses with the wait for the next token', () => {
    const { limiter, allowed } = limiterAt({ perSecond: 2, burst: 5 });
    expect(allowed('a', 5)).toBe(5);
    expect(limiter.take('a')).toEqual({ allowed: false, retryAfterSeconds: 1 });
  });

  it('refills at the configured rate, never above the burst', () => {
    const { advance, allowed } = limiterAt({ perSecond: 10, burst: 20 });
    expect(allowed('a', 20)).toBe(20);
    advance(500);
    expect(allowed('a', 10)).toBe(5);
    advance(60_000);
    expect(allowed('a', 100)).toBe(20);
  });

  it('says how long until a token is back when the rate is below one per second', () => {
    const { limiter, advance } = limiterAt({ perSecond: 0.25, burst: 1 });
    expect(limiter.take('a').allowed).toBe(true);
    expect(limiter.take('a')).toEqual({ allowed: false, retryAfterSeconds: 4 });
    advance(3_000);
    expect(limiter.take('a')).toEqual({ allowed: false, retryAfterSeconds: 1 });
    advance(1_000);
    expect(limiter.take('a').allowed).toBe(true);
  });

  it('keeps one bucket per client', () => {
    const { allowed } = limiterAt({ perSecond: 1, burst: 3 });
    expect(allowed('a', 10)).toBe(3);
    expect(allowed('b', 10)).toBe(3);
    expect(allowed('a', 1)).toBe(0);
  });

  it('forgets a client once its bucket would be full again', () => {
    const { limiter, advance, allowed } = limiterAt({ perSecond: 10, burst: 10 });
    allowed('a', 10);
    allowed('b', 1);
    advance(999);
    allowed('c', 1);
    expect(limiter.size).toBe(3);
    advance(1);
    limiter.take('c');
    expect(limiter.size).toBe(1);
  });

  it('tracks no more than maxClients, however many addresses arrive', () => {
    const { limiter, allowed } = limiterAt({ perSecond: 1, burst: 1, maxClients: 100 });
    for (let i = 0; i < 10_000; i += 1) limiter.take(`10.0.${i >> 8}.${i & 255}`);
    expect(limiter.size).toBe(100);
    // The most recent clients are the ones kept.
    expect(allowed('10.0.39.15', 1)).toBe(0);
    expect(allowed('10.0.0.0', 1)).toBe(1);
  });

  it('refuses a limit that could never let anything through', () => {
    expect(() => new RateLimiter({ perSecond: 0, burst: 1, maxClients: 1, now: () => 0 })).toThrow();
    expect(() => new RateLimiter({ perSecond: 1, burst: 0, maxClients: 1, now: () => 0 })).toThrow();
  });
});

describe('clientKey', () => {
  it.each([
    ['203.0.113.7', '203.0.113.7'],
    ['::ffff:203.0.113.7', '203.0.113.7'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::9', '2001:db8:1:2::/64'],
    ['2001:db8::1:2:3:4:5', '2001:db8:0:1::/64'],
    ['2001:0db8:0000:0002::', '2001:db8:0:2::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['64:ff9b::192.0.2.1', '64:ff9b:0:0::/64'],
    [undefined, 'unknown'],
  ])('keys %s as %s', (ip, key) => {
    expect(clientKey(ip)).toBe(key);
  });

  it('puts every address of one IPv6 /64 in one bucket', () => {
    expect(clientKey('2001:db8:aa:bb:1::1')).toBe(clientKey('2001:db8:aa:bb:ffff::2'));
    expect(clientKey('2001:db8:aa:bb::1')).not.toBe(clientKey('2001:db8:aa:bc::1'));
  });
});
