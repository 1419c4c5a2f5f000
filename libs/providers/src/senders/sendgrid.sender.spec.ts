import { SendgridSender } from './sendgrid.sender';
import { SAMPLE_TASK_ID, SAMPLE_TRACKING_ID, sampleMail } from './testing/sample-mail';
import {
  COMMON_HTTP_FAILURES,
  LocalHttpServer,
  neverAnswer,
  reply,
  startLocalHttpServer,
  unusedBaseUrl,
} from './testing/local-http-server';

describe('SendgridSender', () => {
  let server: LocalHttpServer;

  beforeEach(async () => {
    server = await startLocalHttpServer(reply(202, '', { 'x-message-id': '14c5d75ce93.dfd.64b469' }));
  });

  afterEach(() => server.close());

  const senderFor = (baseUrl: string, timeoutMs?: number) =>
    new SendgridSender({ credentials: { apiKey: 'SG.test-key' }, options: { baseUrl, timeoutMs } });

  it('posts a v3 mail send with the tracking id in custom_args and headers', async () => {
    await senderFor(server.baseUrl).send(sampleMail());

    const [request] = server.requests;
    expect(request.method).toBe('POST');
    expect(request.path).toBe('/v3/mail/send');
    expect(request.headers.authorization).toBe('Bearer SG.test-key');
    expect(JSON.parse(request.body)).toEqual({
      personalizations: [
        {
          to: [{ email: 'reader@example.org', name: 'Ada Reader' }],
          custom_args: { edm_tracking_id: SAMPLE_TRACKING_ID, edm_task_id: SAMPLE_TASK_ID },
        },
      ],
      from: { email: 'news@edm.example.com', name: 'EDM News' },
      subject: 'Our spring offers',
      content: [
        { type: 'text/plain', value: sampleMail().text },
        { type: 'text/html', value: sampleMail().html },
      ],
      headers: {
        'X-EDM-Tracking-Id': SAMPLE_TRACKING_ID,
        'List-Unsubscribe': sampleMail().headers['List-Unsubscribe'],
        'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
        'Message-ID': `<${SAMPLE_TRACKING_ID}@edm.example.com>`,
      },
    });
  });

  it('takes X-Message-Id of the 202 as the provider message id', async () => {
    expect(await senderFor(server.baseUrl).send(sampleMail())).toEqual({
      kind: 'sent',
      providerMessageId: '14c5d75ce93.dfd.64b469',
    });
  });

  it('treats an invalid recipient address as permanent', async () => {
    server.respondWith(
      reply(400, {
        errors: [
          {
            message: 'Does not contain a valid address.',
            field: 'personalizations.0.to.0.email',
            help: null,
          },
        ],
      }),
    );

    expect(await senderFor(server.baseUrl).send(sampleMail())).toEqual({
      kind: 'permanent',
      reason: 'HTTP 400: personalizations.0.to.0.email: Does not contain a valid address.',
    });
  });

  it('treats a refused sender address as a problem of the account', async () => {
    server.respondWith(
      reply(400, {
        errors: [{ message: 'The from email does not contain a valid address.', field: 'from.email' }],
      }),
    );

    expect((await senderFor(server.baseUrl).send(sampleMail())).kind).toBe('account');
  });

  it.each(COMMON_HTTP_FAILURES)('classifies $name as $expected', async ({ respond, expected }) => {
    server.respondWith(respond);

    expect((await senderFor(server.baseUrl).send(sampleMail())).kind).toBe(expected);
  });

  it('passes Retry-After of a 429 on', async () => {
    server.respondWith(reply(429, { errors: [{ message: 'too many requests' }] }, { 'retry-after': '7' }));

    expect(await senderFor(server.baseUrl).send(sampleMail())).toMatchObject({
      kind: 'transient',
      retryAfterMs: 7_000,
    });
  });

  it('classifies a server that is not listening as transient', async () => {
    expect((await senderFor(await unusedBaseUrl()).send(sampleMail())).kind).toBe('transient');
  });

  it('classifies no answer within the timeout, after sending, as ambiguous', async () => {
    server.respondWith(neverAnswer);

    expect((await senderFor(server.baseUrl, 200).send(sampleMail())).kind).toBe('ambiguous');
  });
});
