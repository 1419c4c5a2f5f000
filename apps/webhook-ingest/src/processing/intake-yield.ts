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
  /** The share of intake's requests over about the last second committed in full commits (CommitSaturation). */
  saturatedShare: number;
  /** Requests intake committed per second over about the last second. */
  storedPerSecond: number;
  /** Requests the process's processing workers together take per second while they run (ProcessingSpeed; 0: not known yet). */
  processedPerSecond: number;
}

/**
 * Requests per intake transaction from which intake counts as saturated. A commit carries what
 * arrived while the last one was in flight: at a steady 1,000 requests/s one to a few, even on a
 * slow day; under a burst that fills intake, 25 and more.
 */
export const SATURATED_REQUESTS_PER_COMMIT = 16;

/**
 * The longest pause (ms). Under a burst a pass takes tens of milliseconds, so its pause stays
 * below this; a pass slowed by something else (a checkpoint, a stall), which
 * can make intake look saturated at a moderate rate, must not hold processing back for seconds.
 */
export const MAX_YIELD_MS = 500;

/** Intake counts as under a burst when at least this share of its recent requests went in full commits. */
export const BURST_SATURATED_SHARE = 0.5;

/**
 * How long a processing worker gives way to intake after a pass (ms; 0: none). Only under a
 * burst: intake stored a whole batch meanwhile, so processing is behind anyway; its commits
 * during the pass were full on average, so the cores are better spent answering providers; most
 * of its requests over about the last second went in full commits, so it has been saturated for
 * a while; and requests come faster than processing takes them even when it runs without a
 * pause, so it would fall behind whatever it did. A pass that was merely slow (a slow machine, a
 * cold process, a checkpoint) under a moderate rate must not pause for several times its length
 * while events wait behind it: after such a stall intake commits what queued meanwhile in a few
 * full transactions, a small part of the second's requests. On a slow machine at a moderate
 * rate the passes themselves hold the event loop long enough for intake's commits to come in
 * clumps that look full; there processing still keeps up when it runs, and a pause would only
 * leave the events waiting (at 1,000 events/s, four pauses of 500 ms in a few seconds). Nor does
 * processing pause before its speed is known (ProcessingSpeed): a fresh process's first passes
 * are slow, and read as its speed they made intake at 1,000 events/s look faster than processing.
 */
export function intakeYieldMs(pass: PassUnderIntake, batch: number, factor: number): number {
  if (!pass.more || factor <= 0 || pass.stored < batch) return 0;
  if (pass.stored < SATURATED_REQUESTS_PER_COMMIT * pass.commits) return 0;
  if (pass.saturatedShare < BURST_SATURATED_SHARE) return 0;
  if (pass.processedPerSecond <= 0 || pass.storedPerSecond <= pass.processedPerSecond) return 0;
  return Math.min(pass.ms * factor, MAX_YIELD_MS);
}

/**
 * Provider events a process parses before its passes say how fast processing is. V8 compiles a
 * hot function only after many calls, and each pooled connection prepares its statements on
 * first use: a fresh process's first passes at 1,000 events/s took 145 ms for what later takes
 * 20. Counted in events, not requests: a SendGrid request holds up to hundreds, and its parsing
 * is warm after a few. At 1,000 single events/s this is the first 5 s; under a burst, about the
 * first second.
 */
export const COLD_EVENTS = 5_000;

/** Where a pass started: when, and how many requests the process's workers had parsed by then. */
export interface PassMark {
  at: number;
  parsed: number;
}

/**
 * How many requests the process's workers together parse per second while they run: an average
 * over the recent passes that took a full batch (a partial one took all there was, and says
 * nothing of speed), once the process has parsed its first COLD_EVENTS. Each such pass reads as
 * what all workers parsed from its start to its end, over its duration.
 *
 * Not one worker's speed times the workers: they share one event loop and one database, and under
 * a burst two parse about as fast as one. Read that way, processing looked up to twice as fast as
 * it was; as a burst began, processing running without pause held intake below that figure, so
 * intake never looked faster than processing and the first 2 to 3 s of the burst went at a third
 * of intake's rate (bench/ingest, docs/benchmarks.md). Passes that end together read low (each
 * sees its own requests and those of passes that ended before it), which errs toward giving way.
 */
export class ProcessingSpeed {
  private events = 0;
  private parsed = 0;
  private rate = 0;

  /** A pass starts at `now`. */
  begin(now: number): PassMark {
    return { at: now, parsed: this.parsed };
  }

  /** The pass begun at `mark` parsed `requests` holding `events` by `now`; `full`: as many requests as one pass takes. */
  record(mark: PassMark, requests: number, events: number, full: boolean, now: number): void {
    this.events += events;
    this.parsed += requests;
    if (!full || this.events <= COLD_EVENTS) return;
    const rate = ((this.parsed - mark.parsed) * 1_000) / Math.max(1, now - mark.at);
    this.rate = this.rate === 0 ? rate : 0.7 * this.rate + 0.3 * rate;
  }

  /** Requests per second; 0 while not known. */
  perSecond(): number {
    return this.rate;
  }
}

/** The time constant of DecayingRate: a rate over about the last second. */
export const RATE_WINDOW_MS = 1_000;

/**
 * A rate of arrivals averaged over about the last RATE_WINDOW_MS, each arrival's weight decaying
 * exponentially with its age: a steady r per second reads r, and a silence decays it.
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

/**
 * The share of intake's requests over about the last second that were committed in full commits:
 * commits of SATURATED_REQUESTS_PER_COMMIT requests or more, which found requests queued behind
 * the INSERT before them. Near 1 under a burst; near 0 at a moderate rate, and well below half
 * just after a stall there.
 *
 * Weighed by requests, not by commits: while processing holds the event loop under a burst, the
 * requests in flight arrive in clumps, each committed as one full transaction followed by a small
 * one with the stragglers. Counted by commits, that read as under half full, no pass paused, and
 * processing kept intake in that state (0.53x the store-first floor in bench/ingest).
 */
export class CommitSaturation {
  private readonly requests = new DecayingRate();
  private readonly full = new DecayingRate();

  record(requests: number, now: number): void {
    this.requests.add(requests, now);
    if (requests >= SATURATED_REQUESTS_PER_COMMIT) this.full.add(requests, now);
  }

  /** Requests committed per second over about the last second. */
  requestsPerSecond(now: number): number {
    return this.requests.perSecond(now);
  }

  /** 0 without commits. */
  share(now: number): number {
    const all = this.requests.perSecond(now);
    return all > 0 ? this.full.perSecond(now) / all : 0;
  }
}
