import { createHash, createHmac } from 'node:crypto';
import { verifyEngagelabSignature, type EngagelabSignatureOptions } from './engagelab.signature';
import type { WebhookRequest } from './signature-check';

const APP_KEY = 'user-app-key-4f1c';
const APP_SECRET = 'app-secret-9b2e';
const TIMESTAMP = '1700000000';
const NOW = new Date(1700000000_000 + 60_000);
const BODY = JSON.stringify({ message_id: 'm1', itime: 1700000000123, status: { message_status: 'sent' } });

/** Vectors computed here, following each documented wording literally. */
const hmacOver = (data: string): string => createHmac('sha256', APP_KEY).update(data).digest('hex');
const md5Of = (data: string): string => createHash('md5').update(data).digest('hex');

const requestSignedWith = (signature: string, timestamp = TIMESTAMP, rawBody = BODY): WebhookRequest => ({
  rawBody,
  headers: {
    'X-WebHook-Timestamp': timestamp,
    'X-WebHook-AppKey': 'email',
    'X-WebHook-Signature': signature,
  },
  now: NOW,
});

const hmac: EngagelabSignatureOptions = { scheme: 'hmac-sha256', appKey: APP_KEY };
const md5: EngagelabSignatureOptions = { scheme: 'md5', appKey: APP_KEY, appSecret: APP_SECRET };

describe('verifyEngagelabSignature, hmac-sha256', () => {
  it('accepts hex HMAC(app key, X-WebHook-Timestamp) (en/th docs), in either hex case', () => {
    expect(verifyEngagelabSignature(requestSignedWith(hmacOver(TIMESTAMP)), hmac)).toEqual({ ok: true });
    expect(verifyEngagelabSignature(requestSignedWith(hmacOver(TIMESTAMP).toUpperCase()), hmac)).toEqual({
      ok: true,
    });
  });

  it('accepts hex HMAC(app key, body itime) (zh docs)', () => {
    expect(verifyEngagelabSignature(requestSignedWith(hmacOver('1700000000123')), hmac)).toEqual({
      ok: true,
    });
  });

  it('rejects a changed timestamp, a wrong key, an md5 signature and missing headers', () => {
    const signature = hmacOver(TIMESTAMP);
    expect(verifyEngagelabSignature(requestSignedWith(signature, '1700000001'), hmac).ok).toBe(false);
    expect(verifyEngagelabSignature(requestSignedWith(signature), { ...hmac, appKey: 'other' }).ok).toBe(
      false,
    );
    expect(
      verifyEngagelabSignature(requestSignedWith(md5Of(`${TIMESTAMP}email${APP_SECRET}`)), hmac).ok,
    ).toBe(false);
    expect(verifyEngagelabSignature({ rawBody: BODY, headers: {}, now: NOW }, hmac)).toEqual({
      ok: false,
      reason: 'missing X-WebHook-Timestamp',
    });
  });

  it('fails closed without an app key', () => {
    expect(
      verifyEngagelabSignature(requestSignedWith(createHmac('sha256', '').update(TIMESTAMP).digest('hex')), {
        scheme: 'hmac-sha256',
        appKey: '',
      }),
    ).toEqual({ ok: false, reason: 'no EngageLab app key configured' });
  });
});

describe('verifyEngagelabSignature, md5', () => {
  it('accepts md5(timestamp + X-WebHook-AppKey + app secret) (www docs)', () => {
    expect(verifyEngagelabSignature(requestSignedWith(md5Of(`${TIMESTAMP}email${APP_SECRET}`)), md5)).toEqual(
      {
        ok: true,
      },
    );
  });

  it('accepts md5(timestamp + X-WebHook-AppKey + app key) (non-www docs)', () => {
    expect(verifyEngagelabSignature(requestSignedWith(md5Of(`${TIMESTAMP}email${APP_KEY}`)), md5)).toEqual({
      ok: true,
    });
  });

  it('rejects a changed timestamp, a wrong secret and an HMAC signature', () => {
    const signature = md5Of(`${TIMESTAMP}email${APP_SECRET}`);
    expect(verifyEngagelabSignature(requestSignedWith(signature, '1700000001'), md5).ok).toBe(false);
    expect(verifyEngagelabSignature(requestSignedWith(signature), { ...md5, appSecret: 'other' }).ok).toBe(
      false,
    );
    expect(verifyEngagelabSignature(requestSignedWith(hmacOver(TIMESTAMP)), md5).ok).toBe(false);
  });
});

describe('verifyEngagelabSignature, any and replay window', () => {
  const any: EngagelabSignatureOptions = { scheme: 'any', appKey: APP_KEY, appSecret: APP_SECRET };

  it('accepts either scheme', () => {
    expect(verifyEngagelabSignature(requestSignedWith(hmacOver(TIMESTAMP)), any)).toEqual({ ok: true });
    expect(verifyEngagelabSignature(requestSignedWith(md5Of(`${TIMESTAMP}email${APP_SECRET}`)), any)).toEqual(
      {
        ok: true,
      },
    );
    expect(verifyEngagelabSignature(requestSignedWith('0'.repeat(64)), any).ok).toBe(false);
  });

  it('checks the timestamp only when a window is configured, in seconds or milliseconds', () => {
    const stale = requestSignedWith(hmacOver(TIMESTAMP));
    expect(verifyEngagelabSignature(stale, hmac)).toEqual({ ok: true });
    expect(verifyEngagelabSignature(stale, { ...hmac, maxSkewMs: 120_000 })).toEqual({ ok: true });
    expect(verifyEngagelabSignature(stale, { ...hmac, maxSkewMs: 30_000 }).ok).toBe(false);
    const inMs = requestSignedWith(hmacOver('1700000000000'), '1700000000000');
    expect(verifyEngagelabSignature(inMs, { ...hmac, maxSkewMs: 120_000 })).toEqual({ ok: true });
  });
});
