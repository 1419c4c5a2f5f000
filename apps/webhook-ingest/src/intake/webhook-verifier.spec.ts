import { createHmac } from 'node:crypto';
import type { AppConfig } from '@edm/config';
import { WebhookVerifier } from './webhook-verifier';

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
});
