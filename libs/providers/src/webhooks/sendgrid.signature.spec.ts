import { generateKeyPairSync, sign } from 'node:crypto';
import { verifySendgridSignature } from './sendgrid.signature';
import type { WebhookRequest } from './signature-check';

/* The official vectors are checked in provider-payloads.spec.ts; these use a locally generated key. */
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const PUBLIC_KEY_B64 = publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
const TIMESTAMP = '1700000000';
const BODY =
  '[{"email":"a@b.example","event":"delivered","timestamp":1700000000,"edm_tracking_id":"t-1"}]\r\n';

const signedRequest = (body: string | Uint8Array = BODY, now = new Date(1700000000_000)): WebhookRequest => ({
  rawBody: body,
  headers: {
    'x-twilio-email-event-webhook-timestamp': TIMESTAMP,
    'x-twilio-email-event-webhook-signature': sign(
      'sha256',
      Buffer.concat([Buffer.from(TIMESTAMP), Buffer.from(body)]),
      privateKey,
    ).toString('base64'),
  },
  now,
});

describe('verifySendgridSignature', () => {
  it('accepts a body signed over timestamp + raw bytes, as string or bytes, key as base64 DER or PEM', () => {
    expect(verifySendgridSignature(signedRequest(), { publicKey: PUBLIC_KEY_B64 })).toEqual({ ok: true });
    expect(verifySendgridSignature(signedRequest(Buffer.from(BODY)), { publicKey: PUBLIC_KEY_B64 })).toEqual({
      ok: true,
    });
    const pem = publicKey.export({ format: 'pem', type: 'spki' }).toString();
    expect(verifySendgridSignature(signedRequest(), { publicKey: pem })).toEqual({ ok: true });
  });

  it('verifies the exact bytes: non-ASCII text must not be re-encoded', () => {
    const body = '[{"email":"zoë@b.example","event":"open","timestamp":1700000000}]';
    expect(verifySendgridSignature(signedRequest(body), { publicKey: PUBLIC_KEY_B64 })).toEqual({ ok: true });
    const latin1 = { ...signedRequest(body), rawBody: Buffer.from(body, 'latin1') };
    expect(verifySendgridSignature(latin1, { publicKey: PUBLIC_KEY_B64 }).ok).toBe(false);
  });

  it('rejects missing headers, garbage signatures and keys that are not P-256', () => {
    const request = signedRequest();
    expect(verifySendgridSignature({ ...request, headers: {} }, { publicKey: PUBLIC_KEY_B64 }).ok).toBe(
      false,
    );
    const garbage = { ...request.headers, 'x-twilio-email-event-webhook-signature': 'not base64!' };
    expect(verifySendgridSignature({ ...request, headers: garbage }, { publicKey: PUBLIC_KEY_B64 }).ok).toBe(
      false,
    );
    const short = { ...request.headers, 'x-twilio-email-event-webhook-signature': 'AAAA' };
    expect(verifySendgridSignature({ ...request, headers: short }, { publicKey: PUBLIC_KEY_B64 }).ok).toBe(
      false,
    );
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
      format: 'der',
      type: 'spki',
    });
    expect(verifySendgridSignature(request, { publicKey: rsa.toString('base64') })).toEqual({
      ok: false,
      reason: 'SendGrid public key is not a P-256 SPKI key',
    });
    expect(verifySendgridSignature(request, { publicKey: '' }).ok).toBe(false);
  });

  it('applies a replay window only when configured', () => {
    const late = signedRequest(BODY, new Date(1700000000_000 + 10 * 60_000));
    expect(verifySendgridSignature(late, { publicKey: PUBLIC_KEY_B64 })).toEqual({ ok: true });
    expect(verifySendgridSignature(late, { publicKey: PUBLIC_KEY_B64, maxSkewMs: 5 * 60_000 }).ok).toBe(
      false,
    );
    expect(verifySendgridSignature(late, { publicKey: PUBLIC_KEY_B64, maxSkewMs: 15 * 60_000 })).toEqual({
      ok: true,
    });
  });
});
