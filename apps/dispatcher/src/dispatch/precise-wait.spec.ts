import { AIM_EARLY_MS, MAX_LEAD_MS, PreciseWait } from './precise-wait';

/** A clock and timers that fire `lateMs` after they are due; each turn of the loop takes `turnMs`. */
function simulated(lateMs: number, turnMs = 0.01) {
  let now = 0;
  let sleeps = 0;
  let turns = 0;
  const wait = new PreciseWait(
    () => now,
    async (ms) => {
      sleeps += 1;
      now += ms + lateMs;
    },
    async () => {
      turns += 1;
      now += turnMs;
    },
  );
  return {
    wait,
    now: () => now,
    advance: (ms: number) => (now += ms),
    counts: () => ({ sleeps, turns }),
  };
}

describe('PreciseWait', () => {
  it('never returns before its target, with timers late by a millisecond or on time', async () => {
    for (const lateMs of [0, 0.3, 1, 2.5]) {
      const sim = simulated(lateMs);
      for (let i = 1; i <= 200; i++) {
        const at = i * 10;
        await sim.wait.until(at);
        expect(sim.now()).toBeGreaterThanOrEqual(at);
      }
    }
  });

  it('learns how late timers fire, so that a gap kept after each request does not add the lateness up', async () => {
    // Requests every 10 ms after the last one, against slots every 10.1 ms (a 1% guard): with a
    // timer 1 ms late each time, waiting naively falls 0.9 ms further behind per request.
    const sim = simulated(1);
    let last = 0;
    const lags: number[] = [];
    for (let i = 1; i <= 500; i++) {
      const slot = i * 10.1;
      await sim.wait.until(Math.max(slot, last + 10));
      last = sim.now();
      lags.push(last - slot);
    }
    // Within a fraction of a millisecond of its slot once the lead is learned, not 450 ms behind.
    expect(Math.max(...lags.slice(-100))).toBeLessThan(0.5);
    // Most of each wait is a timer: the turns wait out about AIM_EARLY_MS, not the whole gap.
    const { sleeps, turns } = sim.counts();
    expect(sleeps).toBeGreaterThanOrEqual(500);
    expect(turns / 500).toBeLessThan((AIM_EARLY_MS * 2) / 0.01);
  });

  it('sets its timers early by at most MAX_LEAD_MS, however late they fire', async () => {
    const sim = simulated(50);
    for (let i = 1; i <= 100; i++) await sim.wait.until(i * 100);
    // The timer of the next wait is set no more than MAX_LEAD_MS early: it fires 50 ms late.
    const at = sim.now() + 100;
    await sim.wait.until(at);
    expect(sim.now()).toBeGreaterThanOrEqual(at + 50 - MAX_LEAD_MS - 1e-9);
  });

  it('returns at once for a target already past, and learns nothing from it', async () => {
    const sim = simulated(1);
    sim.advance(100);
    await sim.wait.until(50);
    expect(sim.counts()).toEqual({ sleeps: 0, turns: 0 });
    expect(sim.now()).toBe(100);
  });
});
