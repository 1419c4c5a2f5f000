import { createHash } from 'node:crypto';
import { Inject, Injectable, Optional } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@edm/config';
import { openSecretOptions } from '@edm/domain';
import {
  MAILGUN_DEFAULT_MAX_SKEW_MS,
  SignatureCheck,
  verifyEngagelabSignature,
  verifyMailgunSignature,
  verifyPostmarkBasicAuth,
  verifySendgridSignature,
  verifySnsSignature,
  WebhookProvider,
} from '@edm/providers';

export interface VerificationTarget {
  provider: WebhookProvider;
  /** The service's options: where its webhook secrets live. */
  options: Record<string, unknown>;
}

const str = (options: Record<string, unknown>, key: string): string | undefined =>
  typeof options[key] === 'string' && options[key] !== '' ? (options[key] as string) : undefined;

/** Fetches SNS's signing certificate (PEM) at a URL whose host was already vetted. */
export type SnsCertificateSource = (url: string) => Promise<string>;

/** Where the verifier gets SNS's certificates; by default, downloaded from SNS and cached. */
export const SNS_CERTIFICATES = Symbol('SNS_CERTIFICATES');

/** Certificates fetched for SNS, by URL; the verifier has already checked the host. */
const certificates = new Map<string, Promise<string>>();
const fetchCertificate: SnsCertificateSource = (url) => {
  let cert = certificates.get(url);
  if (!cert) {
    cert = fetch(url, { signal: AbortSignal.timeout(5_000) }).then((r) => {
      if (!r.ok) throw new Error(`certificate fetch answered ${r.status}`);
      return r.text();
    });
    cert.catch(() => certificates.delete(url));
    certificates.set(url, cert);
  }
  return cert;
};

/**
 * Mailgun tokens of verified requests, each with a hash of its body, for as long as a signature
 * with that token can pass the timestamp window (both ways). Mailgun signs the timestamp and the
 * token, not the body: a signature captured from one request could carry forged content until its
 * timestamp leaves the window. A retry of the same request (same token, same body) goes through.
 * Bounded: past `max` tokens the oldest are forgotten first. Per replica: a replay sent to
 * another replica is not seen here.
 */
export class MailgunTokenMemory {
  private readonly seen = new Map<string, { hash: string; at: number }>();

  constructor(
    private readonly keepMs = 2 * MAILGUN_DEFAULT_MAX_SKEW_MS,
    private readonly max = 100_000,
  ) {}

  /** Whether the token came before with another body; remembers it with this one otherwise. */
  reused(token: string, rawBody: string, now = Date.now()): boolean {
    const hash = createHash('sha256').update(rawBody).digest('base64');
    const earlier = this.seen.get(token);
    if (earlier !== undefined && now - earlier.at < this.keepMs) return earlier.hash !== hash;
    this.seen.delete(token);
    for (const [oldest, { at }] of this.seen) {
      if (now - at < this.keepMs && this.seen.size < this.max) break;
      this.seen.delete(oldest);
    }
    this.seen.set(token, { hash, at: now });
    return false;
  }
}

export interface Verification {
  verified: boolean;
  failure?: string;
  /** The failure decided nothing (SNS's certificate did not download): the sender should retry. */
  retryable?: true;
  /** An SNS message from one of the topics its service names: a subscription it asks for may be confirmed. */
  fromOwnTopic?: true;
}

/**
 * Checks a request against the secrets its service has. A service with no secret configured
 * accepts unsigned requests, and they are stored as unverified; once a secret is set, a request
 * that does not verify is refused (401) and not processed.
 *
 * The answer is immediate for every provider but SES, whose signing certificate may have to be
 * fetched first: the checks run for every webhook, and a promise per request would be work on
 * intake's hot path for nothing.
 */
@Injectable()
export class WebhookVerifier {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Optional()
    @Inject(SNS_CERTIFICATES)
    private readonly snsCertificates: SnsCertificateSource = fetchCertificate,
  ) {}

  private readonly mailgunTokens = new MailgunTokenMemory();
  private readonly tokenReused = (token: string, rawBody: string) =>
    this.mailgunTokens.reused(token, rawBody);

  verify(
    target: VerificationTarget,
    rawBody: string,
    headers: Record<string, string>,
  ): Verification | Promise<Verification> {
    const request = { rawBody, headers, now: new Date() };
    if (target.provider === 'ses') {
      // SNS messages always carry a signature; it is always checked. It proves that SNS sent the
      // message, from any AWS account's topic: `webhookTopicArns` names the service's own, and
      // only then may a subscription be confirmed (else anyone's topic could subscribe us).
      const topics = target.options.webhookTopicArns;
      const topicArns = Array.isArray(topics) && topics.length > 0 ? (topics as string[]) : undefined;
      return verifySnsSignature(request, { fetchCert: this.snsCertificates, topicArns }).then((check) =>
        check.ok && topicArns ? CONFIRMABLE : outcome(check),
      );
    }
    const o = openSecretOptions(this.config.encryptionKey, target.options);
    switch (target.provider) {
      case 'engagelab': {
        const appKey = str(o, 'webhookAppKey');
        if (!appKey) return UNSIGNED;
        const scheme = str(o, 'webhookSignatureScheme');
        return outcome(
          verifyEngagelabSignature(request, {
            scheme: scheme === 'md5' || scheme === 'hmac-sha256' ? scheme : 'any',
            appKey,
            appSecret: str(o, 'webhookAppSecret'),
          }),
        );
      }
      case 'sendgrid': {
        const publicKey = str(o, 'webhookPublicKey');
        return publicKey ? outcome(verifySendgridSignature(request, { publicKey })) : UNSIGNED;
      }
      case 'mailgun': {
        const signingKey = str(o, 'webhookSigningKey');
        return signingKey
          ? outcome(verifyMailgunSignature(request, { signingKey, tokenReused: this.tokenReused }))
          : UNSIGNED;
      }
      case 'postmark': {
        const username = str(o, 'webhookUsername');
        const password = str(o, 'webhookPassword');
        return username && password
          ? outcome(verifyPostmarkBasicAuth(request, { username, password }))
          : UNSIGNED;
      }
      case 'sandbox':
        return UNSIGNED;
    }
  }
}

/** A verified SNS message from a topic its service names. */
const CONFIRMABLE: Verification = Object.freeze({ verified: true, fromOwnTopic: true });

/** A request to a service without a secret: stored, as unverified. */
const UNSIGNED: Verification = Object.freeze({ verified: false });

const outcome = (check: SignatureCheck): Verification =>
  check.ok
    ? { verified: true }
    : check.retryable
      ? { verified: false, failure: check.reason, retryable: true }
      : { verified: false, failure: check.reason };
