import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { headerValue } from './event-fields';
import { rawBodyBytes, type SignatureCheck, type WebhookRequest } from './signature-check';

export const SENDGRID_SIGNATURE_HEADER = 'X-Twilio-Email-Event-Webhook-Signature';
export const SENDGRID_TIMESTAMP_HEADER = 'X-Twilio-Email-Event-Webhook-Timestamp';

export interface SendgridSignatureOptions {
  /** The verification key from SendGrid's settings: base64 DER SubjectPublicKeyInfo, or PEM. */
  publicKey: string;
  /** Reject timestamps further than this from `now`; SendGrid documents no window, so off by default. */
  maxSkewMs?: number | null;
}

const loadP256Key = (publicKey: string): KeyObject | undefined => {
  try {
    const key = publicKey.includes('-----BEGIN')
      ? createPublicKey(publicKey)
      : createPublicKey({ key: Buffer.from(publicKey.trim(), 'base64'), format: 'der', type: 'spki' });
    return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1'
      ? key
      : undefined;
  } catch {
    return undefined;
  }
};

/**
 * Signed Event Webhook: ECDSA P-256 / SHA-256 over the timestamp header followed by the raw body
 * bytes (trailing CRLF included), signature base64 DER. Verify before parsing: re-serialised JSON
 * never matches.
 */
export const verifySendgridSignature = (
  { rawBody, headers, now }: WebhookRequest,
  options: SendgridSignatureOptions,
): SignatureCheck => {
  const key = loadP256Key(options.publicKey);
  if (key === undefined) return { ok: false, reason: 'SendGrid public key is not a P-256 SPKI key' };
  const timestamp = headerValue(headers, SENDGRID_TIMESTAMP_HEADER);
  const signature = headerValue(headers, SENDGRID_SIGNATURE_HEADER)?.trim();
  if (!timestamp) return { ok: false, reason: `missing ${SENDGRID_TIMESTAMP_HEADER}` };
  if (!signature) return { ok: false, reason: `missing ${SENDGRID_SIGNATURE_HEADER}` };
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(signature)) return { ok: false, reason: 'signature is not base64' };

  const signed = Buffer.concat([Buffer.from(timestamp, 'utf8'), rawBodyBytes(rawBody)]);
  let valid: boolean;
  try {
    valid = verify('sha256', signed, { key, dsaEncoding: 'der' }, Buffer.from(signature, 'base64'));
  } catch {
    valid = false;
  }
  if (!valid) return { ok: false, reason: 'SendGrid ECDSA signature mismatch' };

  if (options.maxSkewMs !== undefined && options.maxSkewMs !== null) {
    const sentAt = /^\d{1,12}$/.test(timestamp) ? Number(timestamp) * 1000 : Number.NaN;
    if (!(Math.abs(now.getTime() - sentAt) <= options.maxSkewMs)) {
      return { ok: false, reason: `${SENDGRID_TIMESTAMP_HEADER} outside the ${options.maxSkewMs} ms window` };
    }
  }
  return { ok: true };
};
