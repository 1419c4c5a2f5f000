import { PostmarkSender } from './postmark.sender';
import { SAMPLE_TASK_ID, SAMPLE_TRACKING_ID, sampleMail } from './testing/sample-mail';
import {
  COMMON_HTTP_FAILURES,
  LocalHttpServer,
  neverAnswer,
  reply,
  startLocalHttpServer,
  unusedBaseUrl,
} from './testing/local-http-server';

describe('PostmarkSender', () => {
  let server: LocalHttpServer;

  beforeEach(async () => {
    server = await startLocalHttpServer(
      reply(200, {
        To: 'reader@example.org',
        SubmittedAt: '2025-03-01T12:00:00.0000000-05:00',
        MessageID: 'b7bc2f4a-e38e-4336-af7d-e6c392c2f817',
        ErrorCode: 0,
        Message: 'OK',
      }),
    );
  });

  afterEach(() => server.close());

  const senderFor = (baseUrl: string, timeoutMs?: number) =>
    new PostmarkSender({
      credentials: { serverToken: 'server-token' },
      options: { baseUrl, timeoutMs, messageStream: 'broadcast' },
    });

  it('posts the email with the tracking id in Metadata and Headers', async () => {
    await senderFor(server.baseUrl).send(sampleMail());

    const [request] = server.requests;
    expect(request.method).toBe('POST');
    expect(request.path).toBe('/email');
    expect(request.headers['x-postmark-server-token']).toBe('server-token');
    expect(JSON.parse(request.body)).toEqual({
      From: 'EDM News <news@edm.example.com>',
      To: 'Ada Reader <reader@example.org>',
      Subject: 'Our spring offers',
      HtmlBody: sampleMail().html,
      TextBody: sampleMail().text,
      Headers: [
        { Name: 'X-EDM-Tracking-Id', Value: SAMPLE_TRACKING_ID },
        { Name: 'List-Unsubscribe', Value: sampleMail().headers['List-Unsubscribe'] },
        { Name: 'List-Unsubscribe-Post', Value: 'List-Unsubscribe=One-Click' },
        { Name: 'Message-ID', Value: `<${SAMPLE_TRACKING_ID}@edm.example.com>` },
      ],
      Metadata: { edm_tracking_id: SAMPLE_TRACKING_ID, edm_task_id: SAMPLE_TASK_ID },
      MessageStream: 'broadcast',
    });
  });

  it('takes MessageID as the provider message id', async () => {
    expect(await senderFor(server.baseUrl).send(sampleMail())).toEqual({
      kind: 'sent',
      providerMessageId: 'b7bc2f4a-e38e-4336-af7d-e6c392c2f817',
    });
  });

  it.each([
    [422, 300, "Invalid 'To' address: 'reader@'.", 'permanent'],
    [422, 406, 'You tried to send to recipient(s) that have been marked as inactive.', 'permanent'],
    [
      401,
      10,
      'The Server Token you provided in the X-Postmark-Server-Token request header was invalid.',
      'account',
    ],
    [422, 405, 'Not allowed to send: you have run out of credits.', 'account'],
    [422, 400, "The 'From' address you supplied is not a Sender Signature on your account.", 'account'],
  ])('classifies HTTP %i with ErrorCode %i by the code', async (status, ErrorCode, Message, expected) => {
    server.respondWith(reply(status, { ErrorCode, Message }));

    expect(await senderFor(server.baseUrl).send(sampleMail())).toEqual({
      kind: expected,
      reason: `HTTP ${status}: ${Message} (ErrorCode ${ErrorCode})`,
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
