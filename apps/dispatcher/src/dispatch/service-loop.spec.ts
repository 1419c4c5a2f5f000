import { restartBackoffMs, retryUntil, WakeableSleep } from './service-loop';

describe('WakeableSleep', () => {
  let sleeps: WakeableSleep;
  /** Whether the sleep has returned, once the timers due by now have run. */
  const returned = (sleep: Promise<void>) => {
    let done = false;
    void sleep.then(() => (done = true));
    return async () => {
      await jest.advanceTimersByTimeAsync(0);
      return done;
    };
  };

  beforeEach(() => {
    jest.useFakeTimers();
    sleeps = new WakeableSleep();
  });

  afterEach(() => jest.useRealTimers());

  it('sleeps for the time asked when nothing wakes it', async () => {
    const done = returned(sleeps.sleep(2_000));
    await jest.advanceTimersByTimeAsync(1_999);
    expect(await done()).toBe(false);
    await jest.advanceTimersByTimeAsync(1);
    expect(await done()).toBe(true);
  });

  it('returns from a sleep at a wake-up', async () => {
    const done = returned(sleeps.sleep(2_000));
    sleeps.wake();
    expect(await done()).toBe(true);
  });

  // A task created while a lease is running (and finds nothing yet) must not wait for the poll.
  it('keeps a wake-up that comes while the loop is busy, after an earlier sleep was woken', async () => {
    const first = returned(sleeps.sleep(2_000));
    sleeps.wake();
    expect(await first()).toBe(true);

    sleeps.wake();
    expect(await returned(sleeps.sleep(2_000))()).toBe(true);
  });

  it('uses a kept wake-up once', async () => {
    sleeps.wake();
    expect(await returned(sleeps.sleep(2_000))()).toBe(true);
    expect(await returned(sleeps.sleep(2_000))()).toBe(false);
  });

  it('does not cut a pace sleep short at a wake-up, but keeps the wake-up for the next sleep', async () => {
    const pace = returned(sleeps.sleep(500, false));
    sleeps.wake();
    expect(await pace()).toBe(false);
    await jest.advanceTimersByTimeAsync(500);
    expect(await pace()).toBe(true);
    expect(await returned(sleeps.sleep(2_000))()).toBe(true);
  });

  it('cuts any sleep short at stop, a pace sleep too, and sleeps no more after it', async () => {
    const pace = returned(sleeps.sleep(500, false));
    sleeps.stop();
    expect(await pace()).toBe(true);
    expect(await returned(sleeps.sleep(500, false))()).toBe(true);
    expect(await returned(sleeps.sleep(2_000))()).toBe(true);
  });
});

describe('retryUntil', () => {
  /** A clock that only the retries' sleeps move, from 0. */
  const clock = () => {
    let now = 0;
    const slept: number[] = [];
    return {
      now: () => now,
      slept,
      sleep: async (ms: number) => {
        slept.push(ms);
        now += ms;
      },
    };
  };
  /** An attempt that fails `failures` times, then succeeds. */
  const failing = (failures: number) => {
    let calls = 0;
    return {
      calls: () => calls,
      attempt: async () => {
        calls += 1;
        if (calls <= failures) throw new Error(`outage ${calls}`);
        return 'recorded';
      },
    };
  };

  // The outcomes are only in memory: a database outage of a few seconds must not lose them while
  // the lease is still ours.
  it('retries with capped exponential backoff until an attempt succeeds, reporting each failure', async () => {
    const time = clock();
    const work = failing(7);
    const failures: [number, string, number | null][] = [];

    const result = await retryUntil(
      work.attempt,
      () => 110_000,
      (attempt, error, retryInMs) => failures.push([attempt, String(error), retryInMs]),
      time.now,
      time.sleep,
    );

    expect(result).toBe('recorded');
    expect(work.calls()).toBe(8);
    expect(time.slept).toEqual([250, 500, 1_000, 2_000, 4_000, 5_000, 5_000]);
    expect(failures.map(([attempt]) => attempt)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(failures[0]).toEqual([1, 'Error: outage 1', 250]);
  });

  it('gives up at the deadline with the last error, after a last attempt at the deadline', async () => {
    const time = clock();
    const work = failing(Infinity);
    const retries: (number | null)[] = [];

    await expect(
      retryUntil(
        work.attempt,
        () => 3_000,
        (_, __, retryInMs) => retries.push(retryInMs),
        time.now,
        time.sleep,
      ),
    ).rejects.toThrow('outage 5');

    expect(time.slept).toEqual([250, 500, 1_000, 1_250]);
    expect(retries).toEqual([250, 500, 1_000, 1_250, null]);
  });

  it('makes the attempt after a wait during which the deadline was brought forward its last, as at shutdown', async () => {
    const time = clock();
    const work = failing(Infinity);
    let deadline = 110_000;
    const sleep = async (ms: number) => {
      await time.sleep(ms);
      if (time.slept.length === 2) deadline = time.now();
    };

    await expect(
      retryUntil(
        work.attempt,
        () => deadline,
        () => undefined,
        time.now,
        sleep,
      ),
    ).rejects.toThrow('outage 3');
    expect(work.calls()).toBe(3);
  });
});

describe('restartBackoffMs', () => {
  it('doubles from 500 ms to 30 s while a loop keeps crashing, and starts over after a good run', () => {
    const waits: number[] = [];
    let wait = 0;
    for (let crash = 0; crash < 9; crash += 1) waits.push((wait = restartBackoffMs(wait, 10)));
    expect(waits).toEqual([500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
    // A run of an hour before the next crash: the wait is short again.
    expect(restartBackoffMs(30_000, 3_600_000)).toBe(500);
    expect(restartBackoffMs(30_000, 30_000)).toBe(30_000);
  });
});
