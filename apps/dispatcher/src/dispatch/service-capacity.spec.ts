import {
  capacity,
  consume,
  paceOf,
  quotaWindowStart,
  ServiceLimits,
  ServiceRuntime,
} from './service-capacity';

const at = (ms: number) => new Date(Date.UTC(2026, 10, 28, 12) + ms);
const runtime = (
  nextSlotMs: number,
  quotaUsed = 0,
  windowStart = quotaWindowStart(at(0), 0),
): ServiceRuntime => ({
  nextSlotAt: at(nextSlotMs),
  quotaUsed,
  quotaWindowStart: windowStart,
});
const interval = (ms: number, dailyQuota: number | null = null): ServiceLimits => ({
  pace: { intervalMs: ms },
  dailyQuota,
  quotaResetHourUtc: 0,
});

describe('service capacity', () => {
  it('spaces slots by the pace plus a guard, and lets requests keep only half of it, to catch up after a late one', () => {
    expect(paceOf({ intervalMs: 100 })).toEqual({ intervalMs: 102, minGapMs: 101, burst: 1 });
    expect(paceOf({ intervalMs: 1_000 })).toEqual({ intervalMs: 1_005, minGapMs: 1_002.5, burst: 1 });
    const perSecond = paceOf({ perSecond: 50, burst: 5 });
    expect(perSecond.minGapMs).toBeGreaterThanOrEqual(20);
    expect(perSecond.minGapMs).toBeLessThan(perSecond.intervalMs);
    expect(perSecond.burst).toBe(5);
  });

  it('given an interval pace, allows one send per slot and says how long to wait for the next', () => {
    const limits = interval(310);
    expect(capacity(limits, runtime(0), at(0), 50)).toMatchObject({
      allowed: 1,
      waitMs: 0,
      firstSlotAt: at(0),
    });
    const after = consume(limits, runtime(0), at(0), 1);
    // 310 ms plus the jitter guard (2%, at most 5 ms).
    expect(after.nextSlotAt).toEqual(at(315));
    expect(capacity(limits, after, at(100), 50)).toMatchObject({ allowed: 0, waitMs: 215 });
    expect(capacity(limits, after, at(315), 50).allowed).toBe(1);
  });

  it('claims a slot ahead of time and says when it is', () => {
    const after = consume(interval(1000), runtime(0), at(0), 1);
    expect(capacity(interval(1000), after, at(900), 50, 200)).toMatchObject({
      allowed: 1,
      firstSlotAt: at(1005),
    });
    expect(capacity(interval(1000), after, at(700), 50, 200)).toMatchObject({ allowed: 0, waitMs: 105 });
  });

  it('never lets an idle interval service send a burst', () => {
    expect(capacity(interval(1000), runtime(-60_000), at(0), 50).allowed).toBe(1);
  });

  it('given a rate with a burst, allows the burst after a quiet spell and the rate after that', () => {
    const limits: ServiceLimits = {
      pace: { perSecond: 10, burst: 5 },
      dailyQuota: null,
      quotaResetHourUtc: 0,
    };
    expect(capacity(limits, runtime(-10_000), at(0), 50).allowed).toBe(5);
    const drained = consume(limits, runtime(-10_000), at(0), 5);
    expect(capacity(limits, drained, at(0), 50)).toMatchObject({ allowed: 0 });
    expect(capacity(limits, drained, at(102), 50).allowed).toBe(1);
    // Over any long run the rate holds: 10 per second.
    let state = drained;
    let sent = 0;
    for (let t = 0; t <= 10_000; t += 37) {
      const c = capacity(limits, state, at(t), 50);
      state = consume(limits, state, at(t), c.allowed);
      sent += c.allowed;
    }
    expect(sent).toBeLessThanOrEqual(101);
    expect(sent).toBeGreaterThanOrEqual(97);
  });

  it('stops at exactly the daily quota and starts again after the reset hour', () => {
    const limits = interval(0, 100);
    expect(capacity(limits, runtime(0, 98), at(0), 50)).toMatchObject({ allowed: 2, quotaLeft: 2 });
    expect(capacity(limits, runtime(0, 100), at(0), 50)).toMatchObject({ allowed: 0, quotaLeft: 0 });
    const nextDay = at(13 * 3_600_000);
    expect(capacity(limits, runtime(0, 100), nextDay, 50)).toMatchObject({ allowed: 50, quotaLeft: 100 });
    expect(consume(limits, runtime(0, 100), nextDay, 3).quotaUsed).toBe(3);
  });

  it('places the quota window at the most recent reset hour', () => {
    expect(quotaWindowStart(new Date('2026-11-28T05:00:00Z'), 8)).toEqual(new Date('2026-11-27T08:00:00Z'));
    expect(quotaWindowStart(new Date('2026-11-28T09:00:00Z'), 8)).toEqual(new Date('2026-11-28T08:00:00Z'));
  });
});
