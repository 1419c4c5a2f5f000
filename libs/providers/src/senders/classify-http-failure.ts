import { FailedSendOutcome } from './mail-sender';

/**
 * A send over HTTP that did not end in an accepted mail:
 * - `response`: the provider answered with `status` (a 2xx here means it answered "accepted" without
 *   anything we could read a message id from).
 * - `transport`: no answer; `requestWritten` says whether the whole request had been handed to the socket.
 */
export type HttpFailure =
  | { stage: 'response'; status: number; reason: string; retryAfter?: string | null }
  | { stage: 'transport'; requestWritten: boolean; reason: string };

// 402 payment/quota; 404/405/410 mean the endpoint or domain configured for the service is wrong. Like
// 401/403, they fail every mail of the service alike, so freezing it beats failing each recipient.
const ACCOUNT_STATUSES = new Set([401, 402, 403, 404, 405, 410]);

/**
 * The one rule every HTTP provider shares for turning a failed request into a SendOutcome (SPEC 3.2).
 * Providers with their own error codes map those first (see `failureOfKind`) and fall back to this.
 */
export function classifyHttpFailure(failure: HttpFailure, now: number = Date.now()): FailedSendOutcome {
  if (failure.stage === 'transport') {
    // Until the full request is out, the provider cannot have acted on it; after that, it may have.
    return failure.requestWritten
      ? { kind: 'ambiguous', reason: `no answer after the request was sent: ${failure.reason}` }
      : { kind: 'transient', reason: `request not sent: ${failure.reason}`, notSent: true };
  }
  const { status } = failure;
  const reason = `HTTP ${status}: ${failure.reason}`;
  if (status >= 200 && status < 300) {
    return { kind: 'ambiguous', reason: `accepted without a readable message id (${reason})` };
  }
  if (status === 408 || status === 425 || status === 429 || status >= 500) {
    return failureOfKind('transient', reason, failure.retryAfter, now);
  }
  if (ACCOUNT_STATUSES.has(status)) return { kind: 'account', reason };
  // Redirects are not followed (a POST must not turn into a GET): the configured endpoint is wrong.
  if (status < 200 || (status >= 300 && status < 400)) {
    return { kind: 'account', reason: `unexpected answer (${reason})` };
  }
  return { kind: 'permanent', reason };
}

/**
 * The outcome for a kind a provider's own error code decided; a transient one keeps the provider's Retry-After.
 */
export function failureOfKind(
  kind: FailedSendOutcome['kind'],
  reason: string,
  retryAfter?: string | null,
  now: number = Date.now(),
): FailedSendOutcome {
  if (kind !== 'transient') return { kind, reason };
  const retryAfterMs = parseRetryAfter(retryAfter, now);
  return retryAfterMs === undefined ? { kind, reason } : { kind, reason, retryAfterMs };
}

/** Retry-After is either delta-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfter(
  value: string | null | undefined,
  now: number = Date.now(),
): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** A short, single-line excerpt of a provider's error body for the outcome reason. */
export function excerpt(body: string, max = 300): string {
  const flat = body.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}
