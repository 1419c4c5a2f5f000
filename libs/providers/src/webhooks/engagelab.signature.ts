import { createHash, createHmac } from 'node:crypto';
import { asIdString, asRecord, headerValue, uniqueIds } from './event-fields';
import { rawBodyText, type SignatureCheck, type WebhookRequest } from './signature-check';
import { parseJsonSafely } from './safe-json';
import { timingSafeMatchesAny } from './timing-safe';

export const ENGAGELAB_TIMESTAMP_HEADER = 'X-WebHook-Timestamp';
export const ENGAGELAB_APP_KEY_HEADER = 'X-WebHook-AppKey';
export const ENGAGELAB_SIGNATURE_HEADER = 'X-WebHook-Signature';

/**
 * EngageLab documents two schemes, and variants of each:
 * - `hmac-sha256`: hex HMAC-SHA256 keyed with the app key, over the X-WebHook-Timestamp header
 *   (en/th docs) or over the body's `itime` (zh docs); both are accepted.
 * - `md5`: md5(timestamp + appkey + secret), with the secret being the app secret (www docs) or
 *   the app key (non-www docs), and "appkey" the X-WebHook-AppKey header or the user's app key.
 * - `any`: either scheme, as open-source receivers do.
 */
export type EngagelabSignatureScheme = 'hmac-sha256' | 'md5' | 'any';

export interface EngagelabSignatureOptions {
  scheme: EngagelabSignatureScheme;
  /** The user's app key: the HMAC key, and the md5 secret in the variant that uses it. */
  appKey: string;
  /** The app secret of the md5 variant that uses one. */
  appSecret?: string;
  /**
   * Reject timestamps further than this from `now`. Off by default: the timestamp's unit is
   * undocumented and EngageLab resends unacknowledged callbacks.
   */
  maxSkewMs?: number | null;
}

const hmacHex = (key: string, data: string): string =>
  createHmac('sha256', key).update(data, 'utf8').digest('hex');
const md5Hex = (data: string): string => createHash('md5').update(data, 'utf8').digest('hex');

const bodyItime = (rawBody: string): string | undefined => {
  const parsed = parseJsonSafely(rawBody);
  return parsed.ok ? asIdString(asRecord(parsed.value)?.itime) : undefined;
};

const hmacCandidates = (appKey: string, timestamp: string, rawBody: string): string[] => {
  const itime = bodyItime(rawBody);
  return [hmacHex(appKey, timestamp), ...(itime === undefined ? [] : [hmacHex(appKey, itime)])];
};

const md5Candidates = (
  options: EngagelabSignatureOptions,
  timestamp: string,
  headerAppKey: string,
): string[] => {
  const secrets = [options.appSecret, options.appKey].filter((s): s is string => s !== undefined && s !== '');
  const middles = uniqueIds([headerAppKey, options.appKey]);
  return secrets.flatMap((secret) => middles.map((middle) => md5Hex(`${timestamp}${middle}${secret}`)));
};

/** Seconds or milliseconds, whichever the value can be. */
const timestampMs = (timestamp: string): number | undefined => {
  if (!/^\d{1,16}$/.test(timestamp)) return undefined;
  const value = Number(timestamp);
  return value > 1e11 ? value : value * 1000;
};

export const verifyEngagelabSignature = (
  { rawBody, headers, now }: WebhookRequest,
  options: EngagelabSignatureOptions,
): SignatureCheck => {
  if (options.appKey === '') return { ok: false, reason: 'no EngageLab app key configured' };
  const timestamp = headerValue(headers, ENGAGELAB_TIMESTAMP_HEADER)?.trim();
  const signature = headerValue(headers, ENGAGELAB_SIGNATURE_HEADER)?.trim().toLowerCase();
  if (!timestamp) return { ok: false, reason: `missing ${ENGAGELAB_TIMESTAMP_HEADER}` };
  if (!signature) return { ok: false, reason: `missing ${ENGAGELAB_SIGNATURE_HEADER}` };

  const headerAppKey = headerValue(headers, ENGAGELAB_APP_KEY_HEADER) ?? '';
  const candidates = [
    ...(options.scheme === 'md5' ? [] : hmacCandidates(options.appKey, timestamp, rawBodyText(rawBody))),
    ...(options.scheme === 'hmac-sha256' ? [] : md5Candidates(options, timestamp, headerAppKey)),
  ];
  if (!timingSafeMatchesAny(signature, candidates)) {
    return { ok: false, reason: `EngageLab ${options.scheme} signature mismatch` };
  }

  if (options.maxSkewMs !== undefined && options.maxSkewMs !== null) {
    const sentAt = timestampMs(timestamp);
    if (sentAt === undefined) return { ok: false, reason: `${ENGAGELAB_TIMESTAMP_HEADER} is not a number` };
    if (Math.abs(now.getTime() - sentAt) > options.maxSkewMs) {
      return {
        ok: false,
        reason: `${ENGAGELAB_TIMESTAMP_HEADER} outside the ${options.maxSkewMs} ms window`,
      };
    }
  }
  return { ok: true };
};
