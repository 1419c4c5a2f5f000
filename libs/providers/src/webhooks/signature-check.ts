import type { WebhookHeaders } from './parsed-mail-event';

/**
 * A request's signature check. `retryable`: nothing was decided, because what the check needs could
 * not be had for now (SNS's certificate did not download); the sender should try again later.
 */
export type SignatureCheck = { ok: true } | { ok: false; reason: string; retryable?: true };

/** What every verifier reads from a request; `rawBody` is the exact bytes received, before any parsing. */
export interface WebhookRequest {
  rawBody: string | Uint8Array;
  headers: WebhookHeaders;
  /** Injected so replay windows are testable. */
  now: Date;
}

export const rawBodyBytes = (rawBody: string | Uint8Array): Buffer =>
  typeof rawBody === 'string' ? Buffer.from(rawBody, 'utf8') : Buffer.from(rawBody);

export const rawBodyText = (rawBody: string | Uint8Array): string =>
  typeof rawBody === 'string' ? rawBody : Buffer.from(rawBody).toString('utf8');
