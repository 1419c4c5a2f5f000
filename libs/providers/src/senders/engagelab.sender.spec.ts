import { EngagelabSender } from './engagelab.sender';
import { SAMPLE_TASK_ID, SAMPLE_TRACKING_ID, sampleMail } from './testing/sample-mail';
import {
  COMMON_HTTP_FAILURES,
  LocalHttpServer,
  neverAnswer,
  reply,
  startLocalHttpServer,
  unusedBaseUrl,
} from './testing/local-http-server';

describe('EngagelabSender', () => {
  const emailId = '1676615711309_104117_18546_8821.sc-10_43_7_16-inbound0$reader@example.org';
  let server: LocalHttpServer;

  beforeEach(async () => {
    server = await startLocalHttpServer(
      reply(200, { email_ids: [emailId], task_id: 104117, request_id: 'r-1' }),
    );
  });

  afterEach(() => server.close());

  const senderFor = (baseUrl: string, timeoutMs?: number) =>
    new EngagelabSender({
      credentials: { apiUser: 'api_user', apiKey: 'api_key' },
      options: { baseUrl, timeoutMs },
    });

  it('posts the documented request with our tracking data', async () => {
    await senderFor(server.baseUrl).send(sampleMail());

    const [request] = server.requests;
    expect(request.method).toBe('POST');
    expect(request.path).toBe('/v1/mail/send');
    // The documentation's own example value, base64 of "api_user:api_key".
    expect(request.headers.authorization).toBe('Basic YXBpX3VzZXI6YXBpX2tleQ==');
    expect(request.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(request.body)).toEqual({
      from: 'EDM News <news@edm.example.com>',
      to: ['reader@example.org'],
      body: {
        subject: 'Our spring offers',
        content: { html: sampleMail().html, text: sampleMail().text },
        headers: {
          'X-EDM-Tracking-Id': SAMPLE_TRACKING_ID,
          'List-Unsubscribe': sampleMail().headers['List-Unsubscribe'],
          'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
          'Message-ID': `<${SAMPLE_TRACKING_ID}@edm.example.com>`,
        },
      },
      custom_args: { edm_tracking_id: SAMPLE_TRACKING_ID, edm_task_id: SAMPLE_TASK_ID },
      request_id: sampleMail().idempotencyKey,
    });
  });

  it("takes the recipient's email id as the provider message id", async () => {
    expect(await senderFor(server.baseUrl).send(sampleMail())).toEqual({
      kind: 'sent',
      providerMessageId: emailId,
    });
  });

  it('treats an acceptance without email ids as ambiguous', async () => {
    server.respondWith(reply(200, { task_id: 104117 }));

    expect((await senderFor(server.baseUrl).send(sampleMail())).kind).toBe('ambiguous');
  });

  it('treats a refused recipient as permanent', async () => {
    server.respondWith(reply(400, { code: 30007, message: 'invalid email address: to' }));

    expect(await senderFor(server.baseUrl).send(sampleMail())).toEqual({
      kind: 'permanent',
      reason: 'HTTP 400: {"code":30007,"message":"invalid email address: to"}',
    });
  });

  it.each(COMMON_HTTP_FAILURES)('classifies $name as $expected', async ({ respond, expected }) => {
    server.respondWith(respond);

    expect((await senderFor(server.baseUrl).send(sampleMail())).kind).toBe(expected);
  });

  it('classifies a server that is not listening as transient', async () => {
    expect((await senderFor(await unusedBaseUrl()).send(sampleMail())).kind).toBe('transient');
  });

  it('classifies no answer within the timeout, after sending, as ambiguous', async () => {
    server.respondWith(neverAnswer);

    expect((await senderFor(server.baseUrl, 200).send(sampleMail())).kind).toBe('ambiguous');
  });
});
