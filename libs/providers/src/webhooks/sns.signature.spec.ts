import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  signSnsMessage as signed,
  SNS_TEST_CERT_PEM as TEST_CERT_PEM,
  SNS_TEST_CERT_URL as CERT_URL,
  type SnsFields,
} from '@edm/testing';
import { SNS_DEFAULT_CERT_HOST_PATTERN, verifySnsSignature, type SnsSignatureOptions } from './sns.signature';

const FIXTURE_DIR = path.resolve(__dirname, '../../../..', '../shared/provider-payloads');
const NOW = new Date('2030-01-01T00:00:00Z');
const TOPIC_ARN = 'arn:aws:sns:eu-west-1:123456789012:edm-events';

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
