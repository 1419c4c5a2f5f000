import { createHmac } from 'node:crypto';
import type { AppConfig } from '@edm/config';
import { MailgunTokenMemory, WebhookVerifier } from './webhook-verifier';

describe('WebhookVerifier', () => {
  const verifier = new WebhookVerifier({ encryptionKey: Buffer.alloc(32, 1) } as AppConfig);
  const mailgunBody = (signingKey: string) => {
    const timestamp = String(Math.floor(Date.now() / 1_000));
    const token = 'a'.repeat(50);
    const signature = createHmac('sha256', signingKey).update(`${timestamp}${token}`).digest('hex');
    return JSON.stringify({
      signature: { timestamp, token, signature },
      'event-data': { event: 'delivered' },
    });
  };

  it('answers at once, without a promise, for every provider but SES', () => {
    for (const provider of ['engagelab', 'sendgrid', 'mailgun', 'postmark', 'sandbox'] as const) {
      const answer = verifier.verify({ provider, options: {} }, '{}', {});
      expect(answer).not.toBeInstanceOf(Promise);
      expect(answer).toEqual({ verified: false });
    }
    const signed = verifier.verify(
      { provider: 'mailgun', options: { webhookSigningKey: 'key-1' } },
      mailgunBody('key-1'),
      {},
    );
    expect(signed).toEqual({ verified: true });
    const forged = verifier.verify(
      { provider: 'mailgun', options: { webhookSigningKey: 'key-1' } },
      mailgunBody('key-2'),
      {},
    );
    expect(forged).toEqual({ verified: false, failure: 'Mailgun HMAC signature mismatch' });
  });

  it('checks an SNS message asynchronously (its certificate may have to be fetched), and refuses an unsigned one', async () => {
    const answer = verifier.verify({ provider: 'ses', options: {} }, '{"Type":"Notification"}', {});
    expect(answer).toBeInstanceOf(Promise);
    await expect(answer).resolves.toMatchObject({ verified: false, failure: expect.any(String) });
  });

  it('lets a retry of a signed Mailgun request through, and refuses its signature on another body', () => {
    const checking = new WebhookVerifier({ encryptionKey: Buffer.alloc(32, 1) } as AppConfig);
    const target = { provider: 'mailgun' as const, options: { webhookSigningKey: 'key-1' } };
    const genuine = mailgunBody('key-1');
    expect(checking.verify(target, genuine, {})).toEqual({ verified: true });
    expect(checking.verify(target, genuine, {})).toEqual({ verified: true });
    const forged = genuine.replace('"delivered"', '"complained"');
    expect(checking.verify(target, forged, {})).toEqual({
      verified: false,
      failure: 'Mailgun token already used with another body',
    });
  });

  it('remembers Mailgun tokens for its window only, and at most its bound, oldest forgotten first', () => {
    const memory = new MailgunTokenMemory(600_000, 3);
    expect(memory.reused('t1', 'a', 0)).toBe(false);
    expect(memory.reused('t1', 'b', 599_999)).toBe(true);
    expect(memory.reused('t1', 'b', 600_000)).toBe(false); // past the window the timestamp check refuses it
    for (const token of ['t2', 't3', 't4']) expect(memory.reused(token, 'a', 600_001)).toBe(false);
    expect(memory.reused('t1', 'c', 600_002)).toBe(false); // the oldest, forgotten for t4
    expect(memory.reused('t4', 'c', 600_003)).toBe(true);
  });

  describe('SNS', () => {
    const topic = 'arn:aws:sns:eu-west-1:123456789012:ses-events';
    const message = (topicArn: string) =>
      JSON.stringify({
        Type: 'Notification',
        MessageId: 'm-1',
        TopicArn: topicArn,
        Message: '{}',
        Timestamp: new Date().toISOString(),
        SignatureVersion: '2',
        Signature: 'c2lnbmF0dXJl',
        SigningCertURL: 'https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem',
      });

    it("refuses a message from another topic than the service's own, before any certificate is fetched", async () => {
      const certificates = jest.fn(async () => 'never asked');
      const checking = new WebhookVerifier({ encryptionKey: Buffer.alloc(32, 1) } as AppConfig, certificates);
      const options = { webhookTopicArns: [topic] };
      await expect(
        checking.verify(
          { provider: 'ses', options },
          message('arn:aws:sns:eu-west-1:999999999999:theirs'),
          {},
        ),
      ).resolves.toEqual({
        verified: false,
        failure: 'topic arn:aws:sns:eu-west-1:999999999999:theirs is not allowed',
      });
      expect(certificates).not.toHaveBeenCalled();
    });

    it('leaves a message undecided, to be sent again, when the certificate cannot be fetched', async () => {
      const unreachable = jest.fn(async () => Promise.reject(new Error('getaddrinfo EAI_AGAIN')));
      const checking = new WebhookVerifier({ encryptionKey: Buffer.alloc(32, 1) } as AppConfig, unreachable);
      await expect(
        checking.verify({ provider: 'ses', options: { webhookTopicArns: [topic] } }, message(topic), {}),
      ).resolves.toEqual({
        verified: false,
        failure: 'SNS certificate not fetched: getaddrinfo EAI_AGAIN',
        retryable: true,
      });
      expect(unreachable).toHaveBeenCalledTimes(1);
    });
  });
});
