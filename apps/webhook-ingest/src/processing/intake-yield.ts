/** What intake did while one processing pass ran. */
export interface PassUnderIntake {
  /** The pass's duration. */
  ms: number;
  /** The pass took a full batch, so more is waiting. */
  more: boolean;
  /** Requests intake committed during the pass. */
  stored: number;
  /** Transactions those requests were committed in. */
  commits: number;
  /** Intake's rate when the pass ended, requests per second over about the last second. */
  ratePerSecond: number;
}

/**
 * Requests per intake transaction from which intake counts as saturated. A commit carries what
 * arrived while the last one was in flight: at a steady 1,000 requests/s one to a few, even on a
 * slow day; under a burst that fills intake, 25 and more.
 */
export const SATURATED_REQUESTS_PER_COMMIT = 16;

/**
 * How long a processing worker gives way to intake after a pass (ms; 0: none). Only under a
 * burst: intake stored a whole batch meanwhile, so processing is behind anyway; intake was
 * saturated, so the cores are better spent answering providers; and its rate over about the
 * last second is above `minRatePerSecond`. A pass that was merely slow (a slow machine, a cold
 * process, a checkpoint) under a moderate rate must not pause for several times its length while
 * events wait behind it: after such a stall intake commits what queued meanwhile in a few large
 * transactions, which the rate, averaged over a second, tells from a burst.
 */
export function intakeYieldMs(
  pass: PassUnderIntake,
  batch: number,
  factor: number,
  minRatePerSecond: number,
): number {
  if (!pass.more || factor <= 0 || pass.stored < batch) return 0;
  if (pass.stored < SATURATED_REQUESTS_PER_COMMIT * pass.commits) return 0;
  if (pass.ratePerSecond < minRatePerSecond) return 0;
  return pass.ms * factor;
}

/** The time constant of DecayingRate: a rate over about the last second. */
export const RATE_WINDOW_MS = 1_000;

/**
 * A rate of arrivals averaged over about the last RATE_WINDOW_MS, each arrival's weight decaying
 * exponentially with its age: a steady r per second reads r, a silence decays it, and a stall
 * followed by the same requests in a rush leaves it where it was.
 */
export class DecayingRate {
  private weight = 0;
  private at = 0;

  add(count: number, now: number): void {
    this.weight = this.weightAt(now) + count;
    this.at = now;
  }

  perSecond(now: number): number {
    return (this.weightAt(now) * 1_000) / RATE_WINDOW_MS;
  }

  private weightAt(now: number): number {
    return now <= this.at ? this.weight : this.weight * Math.exp(-(now - this.at) / RATE_WINDOW_MS);
  }
}
