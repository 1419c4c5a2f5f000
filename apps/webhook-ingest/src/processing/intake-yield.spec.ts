import {
  BURST_SATURATED_SHARE,
  COLD_EVENTS,
  CommitSaturation,
  DecayingRate,
  intakeYieldMs,
  MAX_YIELD_MS,
  ProcessingSpeed,
  RATE_WINDOW_MS,
  SATURATED_REQUESTS_PER_COMMIT,
} from './intake-yield';

describe('intakeYieldMs', () => {
  // A burst: 520 requests in 20 commits during a 20 ms pass, nearly every recent commit full.
  // Requests come at 8,000/s; processing takes 3,000/s while it runs.
  const burst = {
    ms: 20,
    more: true,
    stored: 520,
    commits: 20,
    saturatedShare: 0.95,
    storedPerSecond: 8_000,
    processedPerSecond: 3_000,
  };
  const yieldMs = (pass: typeof burst, factor = 3) => intakeYieldMs(pass, 50, factor);

  it('gives way for a multiple of the pass under a burst that saturates intake', () => {
    expect(yieldMs(burst)).toBe(60);
    // Just saturated: 16 requests a commit, and half the recent commits full.
    expect(
      yieldMs({
        ...burst,
        stored: SATURATED_REQUESTS_PER_COMMIT * 30,
        commits: 30,
        saturatedShare: BURST_SATURATED_SHARE,
      }),
    ).toBe(60);
  });

  it('does not pause a slow pass under a moderate rate, where commits carry a few requests each', () => {
    // An 80 ms pass at 1,000 requests/s on a slow day: 80 stored in 16 commits of 5.
    const slow = { ...burst, ms: 80, stored: 80, commits: 16, saturatedShare: 0 };
    expect(yieldMs(slow)).toBe(0);
    expect(yieldMs({ ...slow, commits: 80 / SATURATED_REQUESTS_PER_COMMIT + 1, saturatedShare: 1 })).toBe(0);
  });

  it('does not pause after a stall at a moderate rate, when what queued meanwhile commits in a rush', () => {
    // A 300 ms pass at 1,000 requests/s: 300 stored in 6 commits of 50. Each is as full as under
    // a burst, but they are a few among the second's small commits.
    expect(yieldMs({ ...burst, ms: 300, stored: 300, commits: 6, saturatedShare: 0.05 })).toBe(0);
  });

  it('does not pause when processing takes requests as fast as they come while it runs, however clumped the commits', () => {
    // 1,000 events/s on a slow machine: each pass holds the event loop, so intake's commits come
    // in full clumps, yet two workers take 2,500 requests/s when they run.
    const clumped = { ...burst, ms: 60, stored: 60, commits: 2, storedPerSecond: 1_000 };
    expect(yieldMs({ ...clumped, processedPerSecond: 2_500 })).toBe(0);
    expect(yieldMs({ ...clumped, processedPerSecond: 1_000 })).toBe(0);
    // Processing slower than intake even when it runs: it falls behind anyway, intake goes first.
    expect(yieldMs({ ...clumped, processedPerSecond: 600 })).toBe(180);
    // Before processing's speed is known (a fresh process), no pause however saturated intake looks.
    expect(yieldMs({ ...clumped, processedPerSecond: 0 })).toBe(0);
    expect(yieldMs({ ...burst, processedPerSecond: 0 })).toBe(0);
  });

  it('pauses at most MAX_YIELD_MS after a slow pass under a burst', () => {
    // A 145 ms pass (a checkpoint, a slow second of the machine) with intake's commits full.
    expect(yieldMs({ ...burst, ms: 145 }, 10)).toBe(MAX_YIELD_MS);
    expect(yieldMs({ ...burst, ms: 30 }, 10)).toBe(300);
  });

  it('does not pause when processing caught up, intake stored less than a batch, or the factor is 0', () => {
    expect(yieldMs({ ...burst, more: false })).toBe(0);
    expect(yieldMs({ ...burst, stored: 49, commits: 1 })).toBe(0);
    expect(yieldMs(burst, 0)).toBe(0);
  });
});

describe('ProcessingSpeed', () => {
  /** One pass from `at` to `at + ms`, nothing else ending meanwhile. */
  const pass = (
    speed: ProcessingSpeed,
    at: number,
    ms: number,
    requests: number,
    events = requests,
    full = true,
  ) => speed.record(speed.begin(at), requests, events, full, at + ms);

  /** A process that has parsed its cold events, at time 0. */
  const warm = () => {
    const speed = new ProcessingSpeed();
    pass(speed, -1_000, 1_000, COLD_EVENTS, COLD_EVENTS, false);
    return speed;
  };

  it('is not known while the process is cold, however many full passes it made', () => {
    const speed = new ProcessingSpeed();
    // A fresh process's first passes: 145 ms for a batch of 50 single events.
    let t = 0;
    for (let parsed = 0; parsed < COLD_EVENTS; parsed += 50, t += 145) pass(speed, t, 145, 50);
    expect(speed.perSecond()).toBe(0);
    // The first full pass past the cold events sets it: 50 in 20 ms, 2,500/s.
    pass(speed, t, 20, 50);
    expect(speed.perSecond()).toBe(2_500);
  });

  it('counts events, not requests, toward the cold start: batches of events warm it sooner', () => {
    const speed = new ProcessingSpeed();
    // SendGrid: 50 requests of 50 events each in 400 ms; two such passes make the cold events,
    // and the third is read.
    pass(speed, 0, 400, 50, 2_500);
    expect(speed.perSecond()).toBe(0);
    pass(speed, 400, 400, 50, 2_500);
    expect(speed.perSecond()).toBe(0);
    pass(speed, 800, 500, 50, 2_500);
    expect(speed.perSecond()).toBe(100);
  });

  it('counts partial passes toward the cold start but reads speed only from full ones', () => {
    const speed = new ProcessingSpeed();
    for (let parsed = 0, t = 0; parsed <= COLD_EVENTS; parsed += 10, t += 1) pass(speed, t, 1, 10, 10, false);
    expect(speed.perSecond()).toBe(0);
    pass(speed, 1_000, 25, 50);
    expect(speed.perSecond()).toBe(2_000);
  });

  it('averages the recent full passes, so one slow pass moves it by less than half', () => {
    const speed = warm();
    pass(speed, 0, 20, 50);
    pass(speed, 20, 200, 50);
    expect(speed.perSecond()).toBeCloseTo(0.7 * 2_500 + 0.3 * 250);
    expect(speed.perSecond()).toBeGreaterThan(1_000);
  });

  it('reads two workers whose passes overlap as their sum', () => {
    const speed = warm();
    // Each worker parses 50 in 20 ms, one starting 10 ms after the other: 5,000/s together.
    const marks = [speed.begin(0), speed.begin(10)];
    for (let end = 20; end <= 400; end += 10) {
      const worker = (end / 10) % 2;
      speed.record(marks[worker], 50, 50, true, end);
      marks[worker] = speed.begin(end);
    }
    expect(speed.perSecond()).toBeCloseTo(5_000, -1);
  });

  it('reads a worker running while the other waits as one worker, not as two', () => {
    const speed = warm();
    // Two workers on one event loop under a burst: while one passes, the other is paused, so the
    // process parses 2,500/s. Read per worker and doubled, that was 5,000/s.
    for (let t = 0; t < 400; t += 20) pass(speed, t, 20, 50);
    expect(speed.perSecond()).toBeCloseTo(2_500);
  });

  it('reads passes that end together low, never high', () => {
    const speed = warm();
    // Two workers each parse 50 in 20 ms, starting and ending at once (5,000/s together): the
    // first to end sees only its own 50, the second both batches.
    for (let t = 0; t < 400; t += 20) {
      const marks = [speed.begin(t), speed.begin(t)];
      for (const mark of marks) speed.record(mark, 50, 50, true, t + 20);
    }
    expect(speed.perSecond()).toBeGreaterThanOrEqual(2_500);
    expect(speed.perSecond()).toBeLessThanOrEqual(5_000);
  });
});

/** Commits of `requests` each, every `every` ms for `ms`, from `start`; returns the end. */
const commits = (
  record: (requests: number, t: number) => void,
  requests: number,
  ms: number,
  every: number,
  start = 0,
) => {
  for (let t = start + every; t <= start + ms; t += every) record(requests, t);
  return start + ms;
};

describe('DecayingRate', () => {
  it('reads a steady rate after a few windows', () => {
    const rate = new DecayingRate();
    const end = commits((n, t) => rate.add(n, t), 5, 5 * RATE_WINDOW_MS, 5);
    expect(rate.perSecond(end)).toBeGreaterThan(980);
    expect(rate.perSecond(end)).toBeLessThan(1_010);
  });

  it('rises within a fraction of a second, and decays in silence', () => {
    const rate = new DecayingRate();
    const end = commits((n, t) => rate.add(n, t), 50, 5 * RATE_WINDOW_MS, 5);
    expect(rate.perSecond(end)).toBeGreaterThan(9_800);
    expect(rate.perSecond(end + 3 * RATE_WINDOW_MS)).toBeLessThan(10_000 * Math.exp(-3) + 1);
    expect(new DecayingRate().perSecond(1_000)).toBe(0);
  });
});

describe('CommitSaturation', () => {
  it('reads near 1 under a burst and near 0 at a moderate rate', () => {
    const burst = new CommitSaturation();
    commits((n, t) => burst.record(n, t), 26, 2 * RATE_WINDOW_MS, 3);
    expect(burst.share(2 * RATE_WINDOW_MS)).toBeGreaterThan(0.99);
    const moderate = new CommitSaturation();
    commits((n, t) => moderate.record(n, t), 6, 2 * RATE_WINDOW_MS, 6);
    expect(moderate.share(2 * RATE_WINDOW_MS)).toBe(0);
    expect(new CommitSaturation().share(0)).toBe(0);
  });

  it('stays low after a stall at a moderate rate, when what queued commits in a few full transactions', () => {
    const saturation = new CommitSaturation();
    // 1,000 requests/s in commits of 6, then nothing for 300 ms, then the 300 that queued in
    // six commits of 50, then the moderate rate again.
    let t = commits((n, at) => saturation.record(n, at), 6, 2 * RATE_WINDOW_MS, 6);
    t = commits((n, at) => saturation.record(n, at), 50, 300, 50, t + 300) - 300;
    expect(saturation.share(t + 300)).toBeLessThan(BURST_SATURATED_SHARE);
    t = commits((n, at) => saturation.record(n, at), 6, 200, 6, t + 300);
    expect(saturation.share(t)).toBeLessThan(0.3);
    t = commits((n, at) => saturation.record(n, at), 6, RATE_WINDOW_MS, 6, t);
    expect(saturation.share(t)).toBeLessThan(0.1);
  });

  it('reads a burst whose requests arrive in clumps, each a full commit and a small one', () => {
    // Processing holds the event loop, and the 64 requests in flight come back together: a
    // commit of 60 and one of the 4 stragglers, every 6 ms. Half the commits are small, but
    // nearly every request went in a full one.
    const saturation = new CommitSaturation();
    let t = 0;
    for (let clump = 0; clump < 300; clump += 1) {
      saturation.record(60, (t += 3));
      saturation.record(4, (t += 3));
    }
    expect(saturation.share(t)).toBeGreaterThan(0.9);
    expect(saturation.requestsPerSecond(t)).toBeGreaterThan(8_000); // 10,667/s, read over about a second
    expect(
      intakeYieldMs(
        {
          ms: 20,
          more: true,
          stored: 192,
          commits: 6,
          saturatedShare: saturation.share(t),
          storedPerSecond: saturation.requestsPerSecond(t),
          processedPerSecond: 2_500,
        },
        50,
        10,
      ),
    ).toBe(200);
  });

  it('reaches the burst share within a fraction of a second of a burst starting', () => {
    const saturation = new CommitSaturation();
    const t = commits((n, at) => saturation.record(n, at), 6, 2 * RATE_WINDOW_MS, 6);
    const end = commits((n, at) => saturation.record(n, at), 26, 400, 3, t);
    expect(saturation.share(end)).toBeGreaterThan(BURST_SATURATED_SHARE);
  });
});
