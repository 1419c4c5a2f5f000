import { headerValue } from './event-fields';
import type { SignatureCheck, WebhookRequest } from './signature-check';
import { timingSafeStringEqual } from './timing-safe';

/** Postmark signs nothing; its webhook URL carries basic-auth credentials we issue. */
export interface PostmarkBasicAuthOptions {
  username: string;
  password: string;
}

export const verifyPostmarkBasicAuth = (
  { headers }: Pick<WebhookRequest, 'headers'>,
  options: PostmarkBasicAuthOptions,
): SignatureCheck => {
  if (options.username === '' || options.password === '') {
    return { ok: false, reason: 'no Postmark basic-auth credentials configured' };
  }
  const match = /^Basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(headerValue(headers, 'authorization') ?? '');
  if (match === null) return { ok: false, reason: 'missing Basic authorization' };
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return { ok: false, reason: 'malformed Basic credentials' };
  // Both halves are always compared, so timing does not reveal which one was wrong.
  const userOk = timingSafeStringEqual(decoded.slice(0, colon), options.username);
  const passwordOk = timingSafeStringEqual(decoded.slice(colon + 1), options.password);
  return userOk && passwordOk
    ? { ok: true }
    : { ok: false, reason: 'Postmark basic-auth credentials mismatch' };
};
