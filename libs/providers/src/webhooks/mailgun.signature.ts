import { createHmac } from 'node:crypto';
import { z } from 'zod';
import { describeIssue } from './event-fields';
import { rawBodyText, type SignatureCheck, type WebhookRequest } from './signature-check';
import { parseJsonSafely } from './safe-json';
import { timingSafeStringEqual } from './timing-safe';

export const MAILGUN_DEFAULT_MAX_SKEW_MS = 5 * 60 * 1000;

export interface MailgunSignatureOptions {
  /** The HTTP webhook signing key (not the API key). */
  signingKey: string;
  /** Reject timestamps further than this from `now`; `null` turns the check off. */
  maxSkewMs?: number | null;
  /**
   * Replay guard: return true when this token came before with another body (and remember it with
   * this one). The signature covers the timestamp and token, not the body, so a captured signature
   * could carry forged content within the window; a retry of the same request (same token, same
   * body) is not a replay. Called only for requests that are otherwise valid, so forged requests
   * cannot fill the store.
   */
  tokenReused?: (token: string, rawBody: string) => boolean;
}

const signatureSchema = z.object({
  signature: z.object({
    timestamp: z.union([z.string().regex(/^\d{1,12}$/), z.number().int().nonnegative()]),
    token: z.string().min(1),
    signature: z.string().regex(/^[0-9a-fA-F]{64}$/),
  }),
});

/** `signature.signature` = hex(HMAC-SHA256(signing key, timestamp + token)). */
export const verifyMailgunSignature = (
  { rawBody, now }: WebhookRequest,
  options: MailgunSignatureOptions,
): SignatureCheck => {
  if (options.signingKey === '') return { ok: false, reason: 'no Mailgun signing key configured' };
  const text = rawBodyText(rawBody);
  const json = parseJsonSafely(text);
  if (!json.ok) return { ok: false, reason: json.reason };
  const parsed = signatureSchema.safeParse(json.value);
  if (!parsed.success) return { ok: false, reason: `Mailgun body ${describeIssue(parsed.error)}` };
  const { timestamp, token, signature } = parsed.data.signature;

  const expected = createHmac('sha256', options.signingKey)
    .update(`${timestamp}${token}`, 'utf8')
    .digest('hex');
  if (!timingSafeStringEqual(signature.toLowerCase(), expected)) {
    return { ok: false, reason: 'Mailgun HMAC signature mismatch' };
  }

  const maxSkewMs = options.maxSkewMs === undefined ? MAILGUN_DEFAULT_MAX_SKEW_MS : options.maxSkewMs;
  if (maxSkewMs !== null && Math.abs(now.getTime() - Number(timestamp) * 1000) > maxSkewMs) {
    return { ok: false, reason: `Mailgun timestamp outside the ${maxSkewMs} ms window` };
  }
  if (options.tokenReused?.(token, text) === true)
    return { ok: false, reason: 'Mailgun token already used with another body' };
  return { ok: true };
};
