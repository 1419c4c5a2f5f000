import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Constant-time string comparison. Both sides are hashed first so that neither a length
 * difference nor the position of the first differing byte shows in the timing.
 */
export const timingSafeStringEqual = (a: string, b: string): boolean =>
  timingSafeEqual(
    createHash('sha256').update(a, 'utf8').digest(),
    createHash('sha256').update(b, 'utf8').digest(),
  );

/** True when `provided` equals any candidate; every candidate is compared, so the match position does not leak. */
export const timingSafeMatchesAny = (provided: string, candidates: readonly string[]): boolean =>
  candidates.reduce((matched, candidate) => timingSafeStringEqual(provided, candidate) || matched, false);
