import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@edm/config';
import { openSecretOptions } from '@edm/domain';
import {
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

/** Certificates fetched for SNS, by URL; the verifier has already checked the host. */
const certificates = new Map<string, Promise<string>>();
const fetchCertificate = (url: string): Promise<string> => {
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
 * Checks a request against the secrets its service has. A service with no secret configured
 * accepts unsigned requests, and they are stored as unverified; once a secret is set, a request
 * that does not verify is refused (401) and not processed.
 */
@Injectable()
export class WebhookVerifier {
  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  async verify(
    target: VerificationTarget,
    rawBody: string,
    headers: Record<string, string>,
  ): Promise<{ verified: boolean; failure?: string }> {
    const request = { rawBody, headers, now: new Date() };
    const o = openSecretOptions(this.config.encryptionKey, target.options);
    let check: SignatureCheck | null = null;
    switch (target.provider) {
      case 'engagelab': {
        const appKey = str(o, 'webhookAppKey');
        if (appKey) {
          const scheme = str(o, 'webhookSignatureScheme');
          check = verifyEngagelabSignature(request, {
            scheme: scheme === 'md5' || scheme === 'hmac-sha256' ? scheme : 'any',
            appKey,
            appSecret: str(o, 'webhookAppSecret'),
          });
        }
        break;
      }
      case 'sendgrid': {
        const publicKey = str(o, 'webhookPublicKey');
        if (publicKey) check = verifySendgridSignature(request, { publicKey });
        break;
      }
      case 'mailgun': {
        const signingKey = str(o, 'webhookSigningKey');
        if (signingKey) check = verifyMailgunSignature(request, { signingKey });
        break;
      }
      case 'ses':
        // SNS messages always carry a signature; it is always checked.
        check = await verifySnsSignature(request, { fetchCert: fetchCertificate });
        break;
      case 'postmark': {
        const username = str(o, 'webhookUsername');
        const password = str(o, 'webhookPassword');
        if (username && password) check = verifyPostmarkBasicAuth(request, { username, password });
        break;
      }
      case 'sandbox':
        break;
    }
    if (check === null) return { verified: false };
    return check.ok ? { verified: true } : { verified: false, failure: check.reason };
  }
}
