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
}

/**
 * Requests per intake transaction from which intake counts as saturated. A commit carries what
 * arrived while the last one was in flight: at a steady 1,000 requests/s one to a few, even on a
 * slow day; under a burst that fills intake, 25 and more.
 */
export const SATURATED_REQUESTS_PER_COMMIT = 16;

/**
 * How long a processing worker gives way to intake after a pass (ms; 0: none). Only when intake
 * stored a whole batch meanwhile, so processing is behind anyway, and intake was saturated, so
 * the cores are better spent answering providers. A pass that was merely slow (a slow machine, a
 * cold process, a checkpoint) under a moderate rate must not pause for several times its length
 * while events wait behind it.
 */
export function intakeYieldMs(pass: PassUnderIntake, batch: number, factor: number): number {
  if (!pass.more || factor <= 0 || pass.stored < batch) return 0;
  if (pass.stored < SATURATED_REQUESTS_PER_COMMIT * pass.commits) return 0;
  return pass.ms * factor;
}
