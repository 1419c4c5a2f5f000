import { sign } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { SNS_DEFAULT_CERT_HOST_PATTERN, verifySnsSignature, type SnsSignatureOptions } from './sns.signature';

/*
 * A self-signed RSA certificate generated once for these tests (openssl req -x509 -newkey rsa:2048
 * -days 36500, valid 2026-11-28 .. 2126-11-04). It stands in for the certificate SNS serves.
 */
const TEST_PRIVATE_KEY_PEM = `-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC4ydF/rl++1M2b
UsZOLbBcZW2b4KU9+M1fDlI39j11O6TvkP3ZeWIh+MmSx6g4xIztTb4FZILvcUGI
gf4sMJwSzpljDS991xRGS+/xH11Ejj0mu/Z2032kGaXvndu87gyEURvkIrWfc0rm
f0VdpAw5+MYsw8P9kJeMaccYhPw5VU417uNKsV41cBMmP0+YPM0PKHn9bBxm/VSz
+0pburtfiRhykM8L7QekUwMNVdHfHTYVc98zjKZ3nezwtD3JYORiL2Nk534o+VFN
jcdgPlur765CcieDWqvC9YuSHL96/xJBhMLodA8oWHJ4zmKGJ43WcF09ONM6A/JH
7Tkyxa1hAgMBAAECggEAGgVNS2H2GIylwTv4MbUMUw5zT1JkYmQhI0QEft3dTJ9P
++4aWN/XWjpKxDD6Nrgysg3S9rZvG6GCnWLUtEtKBvnxrnmCWQGK2NVDndwRSaCP
6t7n91aTqCJ2c9XyRdntiEpVl5vtoFzfTLLaRTPfBuDJoy8T76ZHON4CS6kaTUZA
n8gKnVHVHr0kkL7sKAKeOP2fpF+2ui2GTsOFXIila5ef+2XdujXTqInIIfOsUFcK
uxsabTINeB9TJBd+aJ2kTX1ESFGCGAtopy5XLgvotb1du2PhcTpmND4sEYXjRjcc
T8GCDd1OyG2SFaJ7pDX/nhDTWLXAWno71SJAhirqkwKBgQD3c6+vU7WjdrmtiTaO
ljktbBG9La9zjw58ZwaxWdCMgqnYckHnlAcQRRCjdTZwlxx/1WxClUrF3Wiba0nD
M/aH2X45l0vabuiKduw7UnZBLbIoX7JpeGiSt2sHXT+yfUg+Niimve6/wwaZykIQ
FiU+kHx03W7CIxuZLYKfS3Vp3wKBgQC/K/lQhvE7Q1vNkp48BgBJzlcJGNKHpDtz
I10ll9KFoJr3LsNoynOVWyQ6n74dm9n0+vmoWA+7gknBcO0UWCLV8u9V1poBXLvU
tLuVx6bu2o60kLfeaZl4TQLi3UZw8ymIeFQAVReCsdTEBgnobFReqtFKWfYPlc1y
BHxH+apQvwKBgB2+1FGZGG6L6QoJQnulZz4kjYVWJo8XlUAzCkTrbPxXAJ+6LF3w
F2FHTBa6Ek86evyK5Tajx5c9ZEO6g+VpK6ts45V8sGuThXSPkxoWcYyoN5BO4J15
EekBD2aVOQD1umdwDzbsAfUfNn3qKELSxqtcpvlNXPENU1X4eIk5guW1AoGALstq
yaVeYy1HyXg8N2EYrPhPIbDrx7wRuUtMv6j8JS19AUh3GK2FwWd/5MG5XbIKlgbh
Ga4Em9d2il1ECxjP3iMLJq3TIMY8TAK5cB5g5FKnX9eUymJ66JGhRTr4xSkgX4Fk
vngVuy4gcKMxxazOsiWJ+XMv4fy/P0uNyGh6oi0CgYAeFmVo1WWAhiW3pa9bYTr4
A9ZwAeCOTCwNQdR2s9Iy5+ZeI1RJYmwvqD4O0yF50Fi4+4JJIRLPPEljqXa5T19g
1KtEStgubTWWvMRUbRFKjuQR08jkn0hwgVtOuKi3JXPEjjTf7i0+WPY9W5A16uIb
PbLf7ok47UPOufC3uLK9EQ==
-----END PRIVATE KEY-----`;
const TEST_CERT_PEM = `-----BEGIN CERTIFICATE-----
MIIDGzCCAgOgAwIBAgIUW94wGF1TnASbTTpLwkAMftmP5kEwDQYJKoZIhvcNAQEL
BQAwHDEaMBgGA1UEAwwRc25zLmFtYXpvbmF3cy5jb20wIBcNMjYxMTI4MDAyMTE0
WhgPMjEyNjExMDQwMDIxMTRaMBwxGjAYBgNVBAMMEXNucy5hbWF6b25hd3MuY29t
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAuMnRf65fvtTNm1LGTi2w
XGVtm+ClPfjNXw5SN/Y9dTuk75D92XliIfjJkseoOMSM7U2+BWSC73FBiIH+LDCc
Es6ZYw0vfdcURkvv8R9dRI49Jrv2dtN9pBml753bvO4MhFEb5CK1n3NK5n9FXaQM
OfjGLMPD/ZCXjGnHGIT8OVVONe7jSrFeNXATJj9PmDzNDyh5/WwcZv1Us/tKW7q7
X4kYcpDPC+0HpFMDDVXR3x02FXPfM4ymd53s8LQ9yWDkYi9jZOd+KPlRTY3HYD5b
q++uQnIng1qrwvWLkhy/ev8SQYTC6HQPKFhyeM5ihieN1nBdPTjTOgPyR+05MsWt
YQIDAQABo1MwUTAdBgNVHQ4EFgQUOwocUNON33glfSNrU2Ou0QtwDnYwHwYDVR0j
BBgwFoAUOwocUNON33glfSNrU2Ou0QtwDnYwDwYDVR0TAQH/BAUwAwEB/zANBgkq
hkiG9w0BAQsFAAOCAQEAZ90Jm6wCco2LDc5mW3m2aN3xtgX6O+UpI2C6BmKz9gc1
Sa8x+pPOnCR/yQ+AnNHbcmVltcKoXJdThIVqXFwlbLkwIYtC+oG97FtELreEKHTI
eNNpVmR8w035waIC1QtEcgBigxtmurlyk0qevnd1JVu/eaKPqy8U34I/q36d3uXM
tghMM2Z2jzDwHXJyWSdTQ69SYMJp6dppiUDIZAihpZtCGIWwKtaTlkiWTknfzsSd
8+UozpIRd4uzeG0ZCpsuhKAoU8SN+CRsjhtQ/r5hhqtIALeKcSFZ259dc2vlshFI
4+228aNuokIyOGuZpvZED+pynUkEZfq4LtmCPdxw2A==
-----END CERTIFICATE-----`;

const FIXTURE_DIR = path.resolve(__dirname, '../../../..', '../shared/provider-payloads');
const NOW = new Date('2030-01-01T00:00:00Z');
const CERT_URL = 'https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem';
const TOPIC_ARN = 'arn:aws:sns:eu-west-1:123456789012:edm-events';

type SnsFields = Record<string, string>;

/** Written out independently of the implementation, straight from AWS's verification guide. */
const stringToSign = (m: SnsFields): string =>
  m.Type === 'Notification'
    ? `Message\n${m.Message}\nMessageId\n${m.MessageId}\n` +
      (m.Subject === undefined ? '' : `Subject\n${m.Subject}\n`) +
      `Timestamp\n${m.Timestamp}\nTopicArn\n${m.TopicArn}\nType\n${m.Type}\n`
    : `Message\n${m.Message}\nMessageId\n${m.MessageId}\nSubscribeURL\n${m.SubscribeURL}\n` +
      `Timestamp\n${m.Timestamp}\nToken\n${m.Token}\nTopicArn\n${m.TopicArn}\nType\n${m.Type}\n`;

const signed = (fields: SnsFields, version: '1' | '2' = '1'): SnsFields => ({
  ...fields,
  SignatureVersion: version,
  SigningCertURL: fields.SigningCertURL ?? CERT_URL,
  Signature: sign(
    version === '1' ? 'sha1' : 'sha256',
    Buffer.from(stringToSign(fields)),
    TEST_PRIVATE_KEY_PEM,
  ).toString('base64'),
});

const notification = (extra: SnsFields = {}): SnsFields => ({
  Type: 'Notification',
  MessageId: '5e1c0b9a-1111-4c2c-8f9d-bdfb0c7bf324',
  TopicArn: TOPIC_ARN,
  Subject: 'Amazon SES Email Event Notification',
  Message: JSON.stringify({ eventType: 'Delivery', mail: { messageId: 'm-1' } }),
  Timestamp: '2029-12-31T23:59:00.000Z',
  UnsubscribeURL: 'https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe',
  ...extra,
});

const confirmation = (type: 'SubscriptionConfirmation' | 'UnsubscribeConfirmation'): SnsFields => ({
  Type: type,
  MessageId: '165545c9-2a5c-472c-8df2-7ff2be2b3b1b',
  Token: '2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad',
  TopicArn: TOPIC_ARN,
  Message: `You have chosen to subscribe to the topic ${TOPIC_ARN}.`,
  SubscribeURL: `https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=${TOPIC_ARN}&Token=2336`,
  Timestamp: '2029-12-31T23:59:00.000Z',
});

const fetchTestCert = (): SnsSignatureOptions['fetchCert'] => jest.fn(async () => TEST_CERT_PEM);

const verify = (message: SnsFields, options: Partial<SnsSignatureOptions> = {}, now = NOW) =>
  verifySnsSignature(
    { rawBody: JSON.stringify(message), headers: { 'x-amz-sns-message-type': message.Type }, now },
    { fetchCert: fetchTestCert(), ...options },
  );

describe('verifySnsSignature', () => {
  it.each(['1', '2'] as const)('accepts a Notification signed with SignatureVersion %s', async (version) => {
    await expect(verify(signed(notification(), version))).resolves.toEqual({ ok: true });
  });

  it('accepts a Notification without Subject (Subject is then not signed)', async () => {
    const { Subject: _omitted, ...withoutSubject } = notification();
    await expect(verify(signed(withoutSubject))).resolves.toEqual({ ok: true });
  });

  it.each(['SubscriptionConfirmation', 'UnsubscribeConfirmation'] as const)(
    'accepts a %s (SubscribeURL and Token are signed)',
    async (type) => {
      await expect(verify(signed(confirmation(type), '2'))).resolves.toEqual({ ok: true });
    },
  );

  it('rejects a version-1 signature presented as version 2', async () => {
    const message = { ...signed(notification(), '1'), SignatureVersion: '2' };
    await expect(verify(message)).resolves.toMatchObject({ ok: false });
  });

  it.each([
    ['Message', { Message: '{"eventType":"Bounce","mail":{"messageId":"m-1"}}' }],
    ['MessageId', { MessageId: 'other' }],
    ['Subject', { Subject: 'changed' }],
    ['Timestamp', { Timestamp: '2029-12-31T23:59:01.000Z' }],
    ['TopicArn', { TopicArn: `${TOPIC_ARN}-2` }],
  ])('rejects a Notification whose %s changed after signing', async (_field, change) => {
    await expect(verify({ ...signed(notification()), ...change })).resolves.toEqual({
      ok: false,
      reason: 'SNS SignatureVersion 1 signature mismatch',
    });
  });

  it.each([
    [
      'SubscribeURL',
      { SubscribeURL: 'https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=evil' },
    ],
    ['Token', { Token: 'evil' }],
  ])('rejects a SubscriptionConfirmation whose %s changed after signing', async (_field, change) => {
    const message = { ...signed(confirmation('SubscriptionConfirmation')), ...change };
    await expect(verify(message)).resolves.toMatchObject({ ok: false });
  });

  it('does not fetch a certificate from a host outside the allow-list', async () => {
    const fetchCert = fetchTestCert();
    for (const url of [
      'https://evil.example.com/SimpleNotificationService-1.pem',
      'https://sns.eu-west-1.amazonaws.com.evil.example/SimpleNotificationService-1.pem',
      'https://xsns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem',
    ]) {
      const message = signed(notification({ SigningCertURL: url }));
      const check = await verify(message, { fetchCert });
      expect(check).toEqual({ ok: false, reason: expect.stringMatching(/host .* is not allowed/) });
    }
    expect(fetchCert).not.toHaveBeenCalled();
  });

  it.each([
    ['plain http', 'http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem'],
    ['credentials', 'https://user:pw@sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem'],
    ['a port', 'https://sns.eu-west-1.amazonaws.com:8443/SimpleNotificationService-1.pem'],
    ['not a .pem', 'https://sns.eu-west-1.amazonaws.com/?redirect=https://evil.example/x.pem'],
    ['not a URL', 'sns.eu-west-1.amazonaws.com/x.pem'],
  ])('rejects a certificate URL with %s', async (_what, url) => {
    const fetchCert = fetchTestCert();
    await expect(verify(signed(notification({ SigningCertURL: url })), { fetchCert })).resolves.toMatchObject(
      {
        ok: false,
      },
    );
    expect(fetchCert).not.toHaveBeenCalled();
  });

  it('accepts the China partition host and a custom allow-list', async () => {
    expect(SNS_DEFAULT_CERT_HOST_PATTERN.test('sns.cn-north-1.amazonaws.com.cn')).toBe(true);
    const url = 'https://sns.internal.test/cert.pem';
    const message = signed(notification({ SigningCertURL: url }));
    await expect(verify(message)).resolves.toMatchObject({ ok: false });
    await expect(verify(message, { certHostPattern: /^sns\.internal\.test$/ })).resolves.toEqual({
      ok: true,
    });
  });

  it('leaves the message undecided (retryable) when the certificate cannot be fetched, and rejects one that is not a certificate', async () => {
    const message = signed(notification());
    await expect(
      verify(message, { fetchCert: async () => Promise.reject(new Error('timeout')) }),
    ).resolves.toEqual({
      ok: false,
      reason: 'SNS certificate not fetched: timeout',
      retryable: true,
    });
    const check = await verify(message, { fetchCert: async () => 'not a pem' });
    expect(check).toMatchObject({ ok: false, reason: expect.stringMatching(/^SNS certificate unusable/) });
    expect(check).not.toHaveProperty('retryable');
  });

  it('rejects outside the certificate validity period', async () => {
    await expect(verify(signed(notification()), {}, new Date('2026-01-01T00:00:00Z'))).resolves.toEqual({
      ok: false,
      reason: 'SNS certificate is not valid at this time',
    });
  });

  it('applies the optional topic allow-list and maximum age', async () => {
    const message = signed(notification());
    await expect(
      verify(message, { topicArns: ['arn:aws:sns:eu-west-1:123456789012:other'] }),
    ).resolves.toMatchObject({
      ok: false,
    });
    await expect(verify(message, { topicArns: [TOPIC_ARN], maxAgeMs: 120_000 })).resolves.toEqual({
      ok: true,
    });
    await expect(verify(message, { maxAgeMs: 30_000 })).resolves.toEqual({
      ok: false,
      reason: 'SNS message is too old',
    });
  });

  it('rejects a message-type header that disagrees with the body', async () => {
    const message = signed(notification());
    const check = await verifySnsSignature(
      {
        rawBody: JSON.stringify(message),
        headers: { 'x-amz-sns-message-type': 'SubscriptionConfirmation' },
        now: NOW,
      },
      { fetchCert: fetchTestCert() },
    );
    expect(check).toMatchObject({ ok: false });
  });

  it.each([
    ['malformed JSON', '{"Type":'],
    [
      'a missing Signature',
      JSON.stringify({ ...notification(), SignatureVersion: '1', SigningCertURL: CERT_URL }),
    ],
    ['an unknown SignatureVersion', JSON.stringify({ ...signed(notification()), SignatureVersion: '3' })],
  ])('rejects %s', async (_what, rawBody) => {
    await expect(
      verifySnsSignature({ rawBody, headers: {}, now: NOW }, { fetchCert: fetchTestCert() }),
    ).resolves.toMatchObject({ ok: false });
  });

  it('every SES fixture in ../shared/provider-payloads FAILS (AWS example signatures)', async () => {
    const files = readdirSync(FIXTURE_DIR).filter((f) => f.startsWith('ses-sns-'));
    expect(files).toHaveLength(10);
    for (const file of files) {
      const fixture = JSON.parse(readFileSync(path.join(FIXTURE_DIR, file), 'utf8')) as {
        headers: Record<string, string>;
        body: unknown;
      };
      const fetchCert = fetchTestCert();
      const check = await verifySnsSignature(
        { rawBody: JSON.stringify(fixture.body), headers: fixture.headers, now: NOW },
        { fetchCert },
      );
      expect(check).toEqual({ ok: false, reason: 'SNS SignatureVersion 1 signature mismatch' });
      expect(fetchCert).toHaveBeenCalledWith(
        'https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem',
      );
    }
  });
});
