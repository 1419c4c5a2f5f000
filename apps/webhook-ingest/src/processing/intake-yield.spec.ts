import { intakeYieldMs, SATURATED_REQUESTS_PER_COMMIT } from './intake-yield';

describe('intakeYieldMs', () => {
  const burst = { ms: 20, more: true, stored: 520, commits: 20 };

  it('gives way for a multiple of the pass under a burst that saturates intake', () => {
    expect(intakeYieldMs(burst, 50, 3)).toBe(60);
    // Just saturated: 16 requests a commit.
    expect(intakeYieldMs({ ...burst, stored: SATURATED_REQUESTS_PER_COMMIT * 30, commits: 30 }, 50, 3)).toBe(
      60,
    );
  });

  it('does not pause a slow pass under a moderate rate, where commits carry a few requests each', () => {
    // An 80 ms pass at 1,000 requests/s on a slow day: 80 stored in 16 commits of 5.
    expect(intakeYieldMs({ ms: 80, more: true, stored: 80, commits: 16 }, 50, 3)).toBe(0);
    expect(
      intakeYieldMs(
        { ms: 80, more: true, stored: 80, commits: 80 / SATURATED_REQUESTS_PER_COMMIT + 1 },
        50,
        3,
      ),
    ).toBe(0);
  });

  it('does not pause when processing caught up, intake stored less than a batch, or the factor is 0', () => {
    expect(intakeYieldMs({ ...burst, more: false }, 50, 3)).toBe(0);
    expect(intakeYieldMs({ ...burst, stored: 49, commits: 1 }, 50, 3)).toBe(0);
    expect(intakeYieldMs(burst, 50, 0)).toBe(0);
  });
});
