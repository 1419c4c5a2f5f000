import { verifyPostmarkBasicAuth } from './postmark.basic-auth';

const CREDENTIALS = { username: 'postmark-hook', password: 'pa:ss word' };
const basic = (value: string) => ({
  headers: { authorization: `Basic ${Buffer.from(value).toString('base64')}` },
});

describe('verifyPostmarkBasicAuth', () => {
  it('accepts the configured credentials (a password may contain ":")', () => {
    expect(verifyPostmarkBasicAuth(basic('postmark-hook:pa:ss word'), CREDENTIALS)).toEqual({ ok: true });
    const upper = { headers: { Authorization: basic('postmark-hook:pa:ss word').headers.authorization } };
    expect(verifyPostmarkBasicAuth(upper, CREDENTIALS)).toEqual({ ok: true });
  });

  it.each([
    ['a wrong password', basic('postmark-hook:pa:ss wore')],
    ['a wrong user', basic('postmark-hooK:pa:ss word')],
    ['a prefix of the password', basic('postmark-hook:pa')],
    ['no colon', basic('postmark-hook')],
    ['no header', { headers: {} }],
    ['a bearer token', { headers: { authorization: 'Bearer abc' } }],
  ])('rejects %s', (_what, request) => {
    expect(verifyPostmarkBasicAuth(request, CREDENTIALS).ok).toBe(false);
  });

  it('fails closed when no credentials are configured', () => {
    expect(verifyPostmarkBasicAuth(basic(':'), { username: '', password: '' })).toEqual({
      ok: false,
      reason: 'no Postmark basic-auth credentials configured',
    });
  });
});
