import { DataSource } from 'typeorm';
import { loadConfig } from '@edm/config';
import { uuidv7 } from '@edm/event-store';
import { JsonLogger, Metrics } from '@edm/observability';
import { createDataSource, runMigrations } from '@edm/persistence';
import {
  createTestEnvironment,
  SNS_TEST_CERT_PEM,
  signSnsMessage,
  SnsFields,
  TestEnvironment,
} from '@edm/testing';
import { RawIntakeWriter } from './raw-intake.writer';
import { WebhookIntakeService } from './webhook-intake.service';
import { WebhookVerifier } from './webhook-verifier';

/**
 * SES's webhooks through the intake against a real database, with SNS messages signed by a test
 * certificate the verifier is given in place of SNS's: what is confirmed, refused, stored and
 * answered 503.
 */
describe('SNS intake (Postgres)', () => {
  let env: TestEnvironment;
  let db: DataSource;
  const account = uuidv7();
  const [pinned, unpinned] = [uuidv7(), uuidv7()];
  const ourTopic = 'arn:aws:sns:eu-west-1:123456789012:ses-events';
  const strangersTopic = 'arn:aws:sns:eu-west-1:999999999999:ses-events';
  const logger = new JsonLogger('test', 'silent');
  let logged: jest.SpyInstance;
  let fetched: jest.SpyInstance;

  const intake = (certificates: (url: string) => Promise<string>) => {
    const config = loadConfig(env.env);
    const metrics = new Metrics('test');
    return new WebhookIntakeService(
      db,
      new RawIntakeWriter(db, metrics),
      new WebhookVerifier(config, certificates),
      logger,
      metrics,
    );
  };
  const certificate = async () => SNS_TEST_CERT_PEM;

  const subscription = (topic: string): SnsFields => ({
    Type: 'SubscriptionConfirmation',
    MessageId: uuidv7(),
    Token: `token-${uuidv7()}`,
    TopicArn: topic,
    Message: `You have chosen to subscribe to the topic ${topic}.`,
    SubscribeURL: `https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=${topic}&Token=${uuidv7()}`,
    Timestamp: new Date().toISOString(),
  });
  const notification = (topic: string): SnsFields => ({
    Type: 'Notification',
    MessageId: uuidv7(),
    TopicArn: topic,
    Message: JSON.stringify({
      eventType: 'Delivery',
      mail: { messageId: 'm-1', destination: ['a@example.com'] },
    }),
    Timestamp: new Date().toISOString(),
  });
  const post = (service: WebhookIntakeService, serviceId: string, message: SnsFields) =>
    service.receive({
      provider: 'ses',
      serviceId,
      path: `/api/webhooks/ses/${serviceId}`,
      contentType: 'text/plain; charset=UTF-8',
      headers: { 'content-type': 'text/plain; charset=UTF-8', 'x-amz-sns-message-type': message.Type },
      body: JSON.stringify(message),
    });
  const stored = async (message: SnsFields) =>
    (
      await db.query(`SELECT service_id, verified FROM event_logs WHERE raw_body = $1`, [
        JSON.stringify(message),
      ])
    ).map((r: { service_id: string; verified: boolean }) => ({
      service: r.service_id,
      verified: r.verified,
    }));
  /** The SubscribeURLs visited so far, once the confirmations that follow a commit have had their turn. */
  const visited = async () => {
    await new Promise((resolve) => setTimeout(resolve, 50));
    return fetched.mock.calls.map(([url]) => String(url));
  };

  beforeAll(async () => {
    env = await createTestEnvironment('sns_intake');
    db = createDataSource({ url: env.databaseUrl, poolSize: 4, applicationName: 'sns-intake-test' });
    await db.initialize();
    await runMigrations(db);
    await db.query(`INSERT INTO accounts VALUES ($1, 'acct', now())`, [account]);
    for (const [id, options] of [
      [pinned, { webhookTopicArns: [ourTopic] }],
      [unpinned, {}],
    ] as const)
      await db.query(
        `INSERT INTO sending_services (id, account_id, name, provider, from_email, pace, options, created_at, updated_at)
         VALUES ($1, $2, $3, 'ses', 'a@example.com', '{"intervalMs":0}', $4, now(), now())`,
        [id, account, `ses-${id}`, JSON.stringify(options)],
      );
  });

  beforeEach(() => {
    logged = jest.spyOn(logger, 'event');
    fetched = jest
      .spyOn(globalThis, 'fetch')
      .mockResolvedValue(new Response('<ConfirmSubscriptionResponse/>'));
  });

  afterEach(() => jest.restoreAllMocks());

  afterAll(async () => {
    await db.destroy();
    await env.dispose();
  });

  it("stores and confirms a subscription to a topic the service names, by visiting SNS's SubscribeURL", async () => {
    const message = signSnsMessage(subscription(ourTopic));
    await expect(post(intake(certificate), pinned, message)).resolves.toEqual({ id: expect.any(String) });
    expect(await stored(message)).toEqual([{ service: pinned, verified: true }]);
    expect(await visited()).toEqual([message.SubscribeURL]);
  });

  it('stores but does not confirm a subscription for a service that names no topic, and says why', async () => {
    const message = signSnsMessage(subscription(strangersTopic));
    await expect(post(intake(certificate), unpinned, message)).resolves.toEqual({ id: expect.any(String) });
    expect(await stored(message)).toEqual([{ service: unpinned, verified: true }]);
    expect(await visited()).toEqual([]);
    expect(logged).toHaveBeenCalledWith(
      'warn',
      'SNS subscription not confirmed: the service names no webhookTopicArns',
      { serviceId: unpinned, topicArn: strangersTopic },
    );
  });

  it('refuses (401) a message changed after SNS signed it, and stores nothing', async () => {
    const message = { ...signSnsMessage(notification(ourTopic)), Message: '{"eventType":"Bounce"}' };
    await expect(post(intake(certificate), pinned, message)).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    });
    expect(await stored(message)).toEqual([]);
  });

  it("refuses (401) a stranger's topic's subscription and notification, stores and confirms nothing", async () => {
    const certificates = jest.fn(certificate);
    const service = intake(certificates);
    for (const message of [
      signSnsMessage(subscription(strangersTopic)),
      signSnsMessage(notification(strangersTopic)),
    ]) {
      await expect(post(service, pinned, message)).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
      expect(await stored(message)).toEqual([]);
    }
    expect(certificates).not.toHaveBeenCalled();
    expect(await visited()).toEqual([]);
  });

  it("answers 503 (SNS retries it) when SNS's certificate cannot be fetched, and stores nothing", async () => {
    const message = signSnsMessage(notification(ourTopic));
    const unreachable = intake(async () => Promise.reject(new Error('getaddrinfo EAI_AGAIN')));
    await expect(post(unreachable, pinned, message)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(await stored(message)).toEqual([]);
    // Once the certificate can be had again, SNS's retry is stored.
    await expect(post(intake(certificate), pinned, message)).resolves.toEqual({ id: expect.any(String) });
    expect(await stored(message)).toEqual([{ service: pinned, verified: true }]);
  });
});
