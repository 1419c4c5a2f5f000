import { createHmac } from 'node:crypto';
import { MAILGUN_DEFAULT_MAX_SKEW_MS, verifyMailgunSignature } from './mailgun.signature';
import type { WebhookRequest } from './signature-check';

const SIGNING_KEY = 'local-signing-key';
const TIMESTAMP = 1700000000;

const body = (token: string, timestamp: number | string = String(TIMESTAMP), key = SIGNING_KEY): string =>
  JSON.stringify({
    signature: {
      timestamp,
      token,
      signature: createHmac('sha256', key).update(`${timestamp}${token}`).digest('hex'),
    },
    'event-data': { event: 'delivered', timestamp: TIMESTAMP, recipient: 'a@b.example' },
  });

const at = (rawBody: string, offsetMs = 0): WebhookRequest => ({
  rawBody,
  headers: { 'content-type': 'application/json' },
  now: new Date(TIMESTAMP * 1000 + offsetMs),
});

/** The injected token store: remembers each token with the first body it came with. */
const tokenStore = () => {
  const seen = new Map<string, string>();
  return (token: string, rawBody: string): boolean => {
    const first = seen.get(token);
    if (first === undefined) seen.set(token, rawBody);
    return first !== undefined && first !== rawBody;
  };
};

describe('verifyMailgunSignature', () => {
  it('accepts hex HMAC-SHA256(signing key, timestamp + token), timestamp as string or number', () => {
    expect(verifyMailgunSignature(at(body('tok-1')), { signingKey: SIGNING_KEY })).toEqual({ ok: true });
    expect(verifyMailgunSignature(at(body('tok-1', TIMESTAMP)), { signingKey: SIGNING_KEY })).toEqual({
      ok: true,
    });
  });

  it('rejects a wrong key, a changed token or timestamp, and a missing signature object', () => {
    expect(
      verifyMailgunSignature(at(body('tok-1', String(TIMESTAMP), 'other')), { signingKey: SIGNING_KEY }).ok,
    ).toBe(false);
    const changedToken = body('tok-1').replace('"token":"tok-1"', '"token":"tok-2"');
    expect(verifyMailgunSignature(at(changedToken), { signingKey: SIGNING_KEY }).ok).toBe(false);
    const changedTime = body('tok-1').replace(`"timestamp":"${TIMESTAMP}"`, `"timestamp":"${TIMESTAMP + 1}"`);
    expect(verifyMailgunSignature(at(changedTime), { signingKey: SIGNING_KEY }).ok).toBe(false);
    expect(verifyMailgunSignature(at('{"event-data":{}}'), { signingKey: SIGNING_KEY }).ok).toBe(false);
    expect(verifyMailgunSignature(at('not json'), { signingKey: SIGNING_KEY }).ok).toBe(false);
    expect(verifyMailgunSignature(at(body('tok-1', String(TIMESTAMP), '')), { signingKey: '' })).toEqual({
      ok: false,
      reason: 'no Mailgun signing key configured',
    });
  });

  it('enforces a 5-minute replay window by default, either side of now', () => {
    expect(MAILGUN_DEFAULT_MAX_SKEW_MS).toBe(300_000);
    const options = { signingKey: SIGNING_KEY };
    expect(verifyMailgunSignature(at(body('a'), 300_000), options)).toEqual({ ok: true });
    expect(verifyMailgunSignature(at(body('b'), 300_001), options)).toEqual({
      ok: false,
      reason: 'Mailgun timestamp outside the 300000 ms window',
    });
    expect(verifyMailgunSignature(at(body('c'), -300_001), options).ok).toBe(false);
  });

  it('uses a configured window, or none', () => {
    expect(
      verifyMailgunSignature(at(body('a'), 60_001), { signingKey: SIGNING_KEY, maxSkewMs: 60_000 }).ok,
    ).toBe(false);
    expect(
      verifyMailgunSignature(at(body('a'), 10 * 365 * 86_400_000), {
        signingKey: SIGNING_KEY,
        maxSkewMs: null,
      }),
    ).toEqual({
      ok: true,
    });
  });

  it('rejects a token reused with another body through the injected hook, and lets a retry of the same request through', () => {
    const options = { signingKey: SIGNING_KEY, tokenReused: tokenStore() };
    expect(verifyMailgunSignature(at(body('tok-1')), options)).toEqual({ ok: true });
    expect(verifyMailgunSignature(at(body('tok-1')), options)).toEqual({ ok: true });
    const forged = body('tok-1').replace('delivered', 'failed');
    expect(forged).not.toBe(body('tok-1'));
    expect(verifyMailgunSignature(at(forged), options)).toEqual({
      ok: false,
      reason: 'Mailgun token already used with another body',
    });
    expect(verifyMailgunSignature(at(body('tok-2')), options)).toEqual({ ok: true });
  });

  it('does not consult the token store for forged or stale requests', () => {
    const tokenReused = jest.fn(() => false);
    verifyMailgunSignature(at(body('tok-1', String(TIMESTAMP), 'forger')), {
      signingKey: SIGNING_KEY,
      tokenReused,
    });
    verifyMailgunSignature(at(body('tok-1'), 3_600_000), { signingKey: SIGNING_KEY, tokenReused });
    expect(tokenReused).not.toHaveBeenCalled();
  });
});
