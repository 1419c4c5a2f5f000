/** How early, on average, a wait's timer aims to fire before its target (ms). */
export const AIM_EARLY_MS = 0.5;
/** The most a timer is ever set early (ms). */
export const MAX_LEAD_MS = 3;

/**
 * Waits until a point on a monotonic clock (ms, as `performance.now()`), never returning before it
 * and, on average, a small fraction of a millisecond after it.
 *
 * A timer fires late by up to a millisecond or so: Node counts whole milliseconds from the event
 * loop's cached clock. A sender that waits for each request a minimum gap after the last one would
 * add that up, one late timer after another, and fall behind its slots for good (about a second
 * within minutes at 15 mails/s). So the timer is set early by how late recent timers were, plus
 * AIM_EARLY_MS, and the rest is waited out turn by turn of the event loop (`setImmediate`),
 * which lets I/O run meanwhile. A timer that fires early, as one may by as long as the current
 * turn has run, is checked against the clock and waited out the same way. The turns cost about
 * half a millisecond of CPU a request, against several for a send's own work.
 */
export class PreciseWait {
  /** How early the next timer is set (ms): learned from how late the recent ones fired. */
  private lead = 0;

  constructor(
    private readonly clock: () => number = () => performance.now(),
    private readonly sleep: (ms: number) => Promise<unknown> = (ms) =>
      new Promise((resolve) => setTimeout(resolve, ms)),
    private readonly nextTurn: () => Promise<unknown> = () => new Promise((resolve) => setImmediate(resolve)),
  ) {}

  async until(at: number): Promise<void> {
    let slept = false;
    for (let wait = at - this.lead - this.clock(); wait > 0; wait = at - this.lead - this.clock()) {
      await this.sleep(wait);
      slept = true;
    }
    // Only a timer says how late timers fire; a target already past says nothing.
    if (slept) {
      const late = this.clock() - at;
      this.lead = Math.min(MAX_LEAD_MS, Math.max(0, this.lead + 0.2 * (late + AIM_EARLY_MS)));
    }
    while (this.clock() < at) await this.nextTurn();
  }
}
