import { Pace } from '@edm/events';

/**
 * Seconds until the pending sub-tasks are sent if the task had its usable services to itself:
 * a lower bound (services are shared between tasks). Null when nothing can send, or when a
 * service has no pace limit (its speed is the provider's, not ours).
 */
export function etaSeconds(pending: number, paces: readonly Pace[]): number | null {
  if (pending === 0) return 0;
  let perSecond = 0;
  for (const pace of paces) {
    const rate =
      'intervalMs' in pace ? (pace.intervalMs > 0 ? 1_000 / pace.intervalMs : Infinity) : pace.perSecond;
    perSecond += rate;
  }
  if (perSecond === 0 || !Number.isFinite(perSecond)) return null;
  return Math.ceil(pending / perSecond);
}
