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

/**
 * The one rule every HTTP provider shares for turning a failed request into a SendOutcome (SPEC 3.2).
 * Providers with their own error codes map those first and fall back to this.
 */
export function classifyHttpFailure(failure: HttpFailure, now: number = Date.now()): FailedSendOutcome {
  if (failure.stage === 'transport') {
    // Until the full request is out, the provider cannot have acted on it; after that, it may have.
    return failure.requestWritten
      ? { kind: 'ambiguous', reason: `no answer after the request was sent: ${failure.reason}` }
      : { kind: 'transient', reason: `request not sent: ${failure.reason}` };
  }
  const { status } = failure;
  const reason = `HTTP ${status}: ${failure.reason}`;
  if (status >= 200 && status < 300) {
    return { kind: 'ambiguous', reason: `accepted without a readable message id (${reason})` };
  }
  if (status === 408 || status === 425 || status === 429 || status >= 500) {
    const retryAfterMs = parseRetryAfter(failure.retryAfter, now);
    return retryAfterMs === undefined
      ? { kind: 'transient', reason }
      : { kind: 'transient', reason, retryAfterMs };
  }
  // 402 payment/quota; 404/405/410 and redirects mean the endpoint or domain configured for the service is
  // wrong. All of them fail every mail of the service alike, so freezing it beats failing each recipient.
  if (
    status === 401 ||
    status === 402 ||
    status === 403 ||
    status === 404 ||
    status === 405 ||
    status === 410
  ) {
    return { kind: 'account', reason };
  }
  if (status < 200 || (status >= 300 && status < 400)) {
    return { kind: 'account', reason: `unexpected answer (${reason})` };
  }
  return { kind: 'permanent', reason };
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
