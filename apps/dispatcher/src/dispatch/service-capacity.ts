import { Pace } from '@edm/events';

export interface ServiceLimits {
  pace: Pace;
  dailyQuota: number | null;
  quotaResetHourUtc: number;
}

export interface ServiceRuntime {
  nextSlotAt: Date;
  quotaUsed: number;
  quotaWindowStart: Date;
}

export interface Capacity {
  /** How many mails may be leased right now. */
  allowed: number;
  /** When the first of them may go; each next one `intervalMs` later (earlier times: at once). */
  firstSlotAt: Date;
  intervalMs: number;
  /** When `allowed` is 0 because of the pace: how long until the next slot. */
  waitMs: number;
  /** Quota left in the current window after a reset, or null without a quota. */
  quotaLeft: number | null;
  windowStart: Date;
}

const DAY = 86_400_000;

/** The most recent daily reset instant at or before `now`. */
export function quotaWindowStart(now: Date, resetHourUtc: number): Date {
  const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), resetHourUtc);
  return new Date(today <= now.getTime() ? today : today - DAY);
}

/**
 * Milliseconds between two slots, the least a sender may leave between two requests, and how many
 * may go back to back after a quiet spell. Slots carry a small guard (2%, at most 5 ms) over the
 * configured pace; requests keep half of it (`minGapMs`), so the gap a provider sees is never
 * shorter than configured, and a request that left late (timers, a busy event loop) leaves the
 * next ones the other half to catch up on their slots instead of pushing every later one back.
 */
export function paceOf(pace: Pace): { intervalMs: number; minGapMs: number; burst: number } {
  const raw = 'intervalMs' in pace ? pace.intervalMs : 1_000 / pace.perSecond;
  const guard = Math.min(5, raw * 0.02);
  return {
    intervalMs: raw + guard,
    minGapMs: raw + guard / 2,
    burst: 'intervalMs' in pace ? 1 : (pace.burst ?? 1),
  };
}

/**
 * Pace as a generic cell rate: a send may take the slot at `nextSlotAt`, and after a quiet spell
 * up to `burst` slots are available at once. The claimed slots move `nextSlotAt` forward, so the
 * long-run rate never exceeds the configured one, whichever replica claims them. Slots up to
 * `lookaheadMs` ahead may be claimed: the mail is prepared early and leaves on the slot's time.
 */
export function capacity(
  limits: ServiceLimits,
  runtime: ServiceRuntime,
  now: Date,
  maxBatch: number,
  lookaheadMs = 0,
): Capacity {
  const windowStart = quotaWindowStart(now, limits.quotaResetHourUtc);
  const used = runtime.quotaWindowStart < windowStart ? 0 : runtime.quotaUsed;
  const quotaLeft = limits.dailyQuota === null ? null : Math.max(0, limits.dailyQuota - used);
  const { intervalMs, burst } = paceOf(limits.pace);
  let slots = maxBatch;
  let waitMs = 0;
  let base = now.getTime();
  if (intervalMs > 0) {
    const horizon = now.getTime() + lookaheadMs;
    base = Math.max(runtime.nextSlotAt.getTime(), now.getTime() - (burst - 1) * intervalMs);
    if (base > horizon) {
      slots = 0;
      waitMs = base - horizon;
    } else {
      slots = Math.min(burst, Math.floor((horizon - base) / intervalMs) + 1);
    }
  }
  return {
    allowed: Math.max(0, Math.min(maxBatch, slots, quotaLeft ?? Infinity)),
    firstSlotAt: new Date(base),
    intervalMs,
    waitMs,
    quotaLeft,
    windowStart,
  };
}

/** The runtime after `taken` slots and quota units were used at `now`. */
export function consume(
  limits: ServiceLimits,
  runtime: ServiceRuntime,
  now: Date,
  taken: number,
): ServiceRuntime {
  const windowStart = quotaWindowStart(now, limits.quotaResetHourUtc);
  const used = runtime.quotaWindowStart < windowStart ? 0 : runtime.quotaUsed;
  const { intervalMs, burst } = paceOf(limits.pace);
  const base = Math.max(runtime.nextSlotAt.getTime(), now.getTime() - (burst - 1) * intervalMs);
  return {
    nextSlotAt: intervalMs > 0 ? new Date(base + taken * intervalMs) : runtime.nextSlotAt,
    quotaUsed: used + taken,
    quotaWindowStart: windowStart,
  };
}
