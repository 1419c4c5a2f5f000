import { verify, X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { describeIssue, headerValue } from './event-fields';
import { parseJsonSafely } from './safe-json';
import { rawBodyText, type SignatureCheck, type WebhookRequest } from './signature-check';

/** Only certificates served by SNS itself (including the China partition) are trusted. */
export const SNS_DEFAULT_CERT_HOST_PATTERN = /^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$/;

export interface SnsSignatureOptions {
  /** Fetches the PEM certificate at an already vetted https URL; callers should cache by URL. */
  fetchCert: (url: string) => Promise<string>;
  /** Matched against the whole host name of SigningCertURL; keep it anchored. */
  certHostPattern?: RegExp;
  /** When set, only these topics are accepted. */
  topicArns?: readonly string[];
  /** Reject messages whose Timestamp is older than this; off by default because SNS retries keep it. */
  maxAgeMs?: number | null;
}

const snsMessageSchema = z.object({
  Type: z.enum(['Notification', 'SubscriptionConfirmation', 'UnsubscribeConfirmation']),
  MessageId: z.string(),
  TopicArn: z.string(),
  Message: z.string(),
  Timestamp: z.string(),
  SignatureVersion: z.enum(['1', '2']),
  Signature: z.string().min(1),
  SigningCertURL: z.string(),
  Subject: z.string().nullish(),
  SubscribeURL: z.string().optional(),
  Token: z.string().optional(),
});

type SnsMessage = z.infer<typeof snsMessageSchema>;

/** AWS's string-to-sign: "Key\nValue\n" for a fixed, per-type list of keys in byte order. */
const snsStringToSign = (message: SnsMessage): string | undefined => {
  const keys: Array<keyof SnsMessage> =
    message.Type === 'Notification'
      ? [
          'Message',
          'MessageId',
          ...(message.Subject != null ? (['Subject'] as const) : []),
          'Timestamp',
          'TopicArn',
          'Type',
        ]
      : ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type'];
  let text = '';
  for (const key of keys) {
    const value = message[key];
    if (typeof value !== 'string') return undefined;
    text += `${key}\n${value}\n`;
  }
  return text;
};

const vetCertUrl = (raw: string, hostPattern: RegExp): string | undefined => {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'SigningCertURL is not a URL';
  }
  if (url.protocol !== 'https:') return 'SigningCertURL is not https';
  if (url.username !== '' || url.password !== '' || url.port !== '')
    return 'SigningCertURL has credentials or a port';
  if (!hostPattern.test(url.hostname)) return `SigningCertURL host ${url.hostname} is not allowed`;
  if (!url.pathname.endsWith('.pem')) return 'SigningCertURL does not name a .pem certificate';
  return undefined;
};

/**
 * Verifies an SNS message (Notification or (Un)SubscriptionConfirmation) against the certificate
 * SNS names, after checking that the certificate URL points at SNS. A confirmation's SubscribeURL
 * must only be visited after this returns ok.
 */
export const verifySnsSignature = async (
  { rawBody, headers, now }: WebhookRequest,
  options: SnsSignatureOptions,
): Promise<SignatureCheck> => {
  const json = parseJsonSafely(rawBodyText(rawBody));
  if (!json.ok) return { ok: false, reason: json.reason };
  const parsed = snsMessageSchema.safeParse(json.value);
  if (!parsed.success) return { ok: false, reason: `SNS message ${describeIssue(parsed.error)}` };
  const message = parsed.data;

  const headerType = headerValue(headers, 'x-amz-sns-message-type');
  if (headerType !== undefined && headerType !== message.Type) {
    return { ok: false, reason: 'x-amz-sns-message-type disagrees with the body Type' };
  }
  if (options.topicArns !== undefined && !options.topicArns.includes(message.TopicArn)) {
    return { ok: false, reason: `topic ${message.TopicArn} is not allowed` };
  }
  const urlProblem = vetCertUrl(
    message.SigningCertURL,
    options.certHostPattern ?? SNS_DEFAULT_CERT_HOST_PATTERN,
  );
  if (urlProblem !== undefined) return { ok: false, reason: urlProblem };
  const stringToSign = snsStringToSign(message);
  if (stringToSign === undefined) return { ok: false, reason: `SNS ${message.Type} lacks a signed field` };

  let pem: string;
  try {
    pem = await options.fetchCert(message.SigningCertURL);
  } catch (error) {
    // SNS's own certificate URL (the host was vetted above) failed to download: a network or
    // service hiccup, not a verdict on the message. SNS retries a 5xx answer, not a 4xx one.
    return {
      ok: false,
      reason: `SNS certificate not fetched: ${error instanceof Error ? error.message : 'unknown'}`,
      retryable: true,
    };
  }
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(pem);
  } catch (error) {
    return {
      ok: false,
      reason: `SNS certificate unusable: ${error instanceof Error ? error.message : 'unknown'}`,
    };
  }
  const nowMs = now.getTime();
  if (nowMs < Date.parse(certificate.validFrom) || nowMs > Date.parse(certificate.validTo)) {
    return { ok: false, reason: 'SNS certificate is not valid at this time' };
  }

  const algorithm = message.SignatureVersion === '1' ? 'sha1' : 'sha256';
  let valid: boolean;
  try {
    valid = verify(
      algorithm,
      Buffer.from(stringToSign, 'utf8'),
      certificate.publicKey,
      Buffer.from(message.Signature, 'base64'),
    );
  } catch {
    valid = false;
  }
  if (!valid)
    return { ok: false, reason: `SNS SignatureVersion ${message.SignatureVersion} signature mismatch` };

  if (options.maxAgeMs !== undefined && options.maxAgeMs !== null) {
    const sentAt = Date.parse(message.Timestamp);
    if (!(nowMs - sentAt <= options.maxAgeMs)) return { ok: false, reason: 'SNS message is too old' };
  }
  return { ok: true };
};
