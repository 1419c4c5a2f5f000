import { DecayingRate, intakeYieldMs, RATE_WINDOW_MS, SATURATED_REQUESTS_PER_COMMIT } from './intake-yield';

describe('intakeYieldMs', () => {
  // A burst: 520 requests in 20 commits during a 20 ms pass, intake at 9,000/s over the last second.
  const burst = { ms: 20, more: true, stored: 520, commits: 20, ratePerSecond: 9_000 };
  const yieldMs = (pass: typeof burst, factor = 3) => intakeYieldMs(pass, 50, factor, 1_500);

  it('gives way for a multiple of the pass under a burst that saturates intake', () => {
    expect(yieldMs(burst)).toBe(60);
    // Just saturated: 16 requests a commit, and just above the rate.
    expect(
      yieldMs({ ...burst, stored: SATURATED_REQUESTS_PER_COMMIT * 30, commits: 30, ratePerSecond: 1_500 }),
    ).toBe(60);
  });

  it('does not pause a slow pass under a moderate rate, where commits carry a few requests each', () => {
    // An 80 ms pass at 1,000 requests/s on a slow day: 80 stored in 16 commits of 5.
    const slow = { ms: 80, more: true, stored: 80, commits: 16, ratePerSecond: 1_000 };
    expect(yieldMs(slow)).toBe(0);
    expect(yieldMs({ ...slow, commits: 80 / SATURATED_REQUESTS_PER_COMMIT + 1 })).toBe(0);
  });

  it('does not pause after a stall at a moderate rate, when what queued meanwhile commits in a rush', () => {
    // A 300 ms pass at 1,000 requests/s: 300 stored in 6 commits of 50. Each commit is as full as
    // under a burst, but the rate over the last second is the same 1,000/s.
    expect(yieldMs({ ms: 300, more: true, stored: 300, commits: 6, ratePerSecond: 1_000 })).toBe(0);
  });

  it('does not pause when processing caught up, intake stored less than a batch, or the factor is 0', () => {
    expect(yieldMs({ ...burst, more: false })).toBe(0);
    expect(yieldMs({ ...burst, stored: 49, commits: 1 })).toBe(0);
    expect(yieldMs(burst, 0)).toBe(0);
  });

  it('needs no rate when the minimum is 0', () => {
    expect(intakeYieldMs({ ...burst, ratePerSecond: 0 }, 50, 3, 0)).toBe(60);
  });
});

describe('DecayingRate', () => {
  /** `perSecond` requests a second for `ms`, in commits every `every` ms, from `start`. */
  const steady = (rate: DecayingRate, perSecond: number, ms: number, every = 5, start = 0) => {
    for (let t = start + every; t <= start + ms; t += every) rate.add((perSecond * every) / 1_000, t);
    return start + ms;
  };

  it('reads a steady rate after a few windows', () => {
    const rate = new DecayingRate();
    const end = steady(rate, 1_000, 5 * RATE_WINDOW_MS);
    expect(rate.perSecond(end)).toBeGreaterThan(980);
    expect(rate.perSecond(end)).toBeLessThan(1_010);
  });

  it('rises within a fraction of a second under a burst', () => {
    const rate = new DecayingRate();
    const end = steady(rate, 1_000, 5 * RATE_WINDOW_MS);
    steady(rate, 10_000, 200, 5, end);
    expect(rate.perSecond(end + 200)).toBeGreaterThan(1_500);
  });

  it('stays put when a stall is followed by the requests that queued during it', () => {
    const rate = new DecayingRate();
    let t = steady(rate, 1_000, 5 * RATE_WINDOW_MS);
    // 300 ms without a commit, then the 300 requests that arrived meanwhile in one commit.
    t += 300;
    rate.add(300, t);
    expect(rate.perSecond(t)).toBeLessThan(1_300);
    t = steady(rate, 1_000, 500, 5, t);
    expect(rate.perSecond(t)).toBeLessThan(1_200);
  });

  it('decays in silence', () => {
    const rate = new DecayingRate();
    const end = steady(rate, 10_000, 5 * RATE_WINDOW_MS);
    expect(rate.perSecond(end + 3 * RATE_WINDOW_MS)).toBeLessThan(10_000 * Math.exp(-3) + 1);
    expect(new DecayingRate().perSecond(1_000)).toBe(0);
  });
});
