import { MailgunSender } from './mailgun.sender';
import { SAMPLE_TASK_ID, SAMPLE_TRACKING_ID, sampleMail } from './testing/sample-mail';
import {
  COMMON_HTTP_FAILURES,
  LocalHttpServer,
  neverAnswer,
  reply,
  startLocalHttpServer,
  unusedBaseUrl,
} from './testing/local-http-server';

describe('MailgunSender', () => {
  let server: LocalHttpServer;

  beforeEach(async () => {
    server = await startLocalHttpServer(
      reply(200, { id: '<20250301120000.1.C0FFEE@mg.edm.example.com>', message: 'Queued. Thank you.' }),
    );
  });

  afterEach(() => server.close());

  const senderFor = (baseUrl: string, timeoutMs?: number) =>
    new MailgunSender({
      credentials: { apiKey: 'key-test', domain: 'mg.edm.example.com' },
      options: { baseUrl, timeoutMs },
    });

  it('posts a form with h: headers and v: user variables', async () => {
    await senderFor(server.baseUrl).send(sampleMail());

    const [request] = server.requests;
    expect(request.method).toBe('POST');
    expect(request.path).toBe('/v3/mg.edm.example.com/messages');
    expect(request.headers.authorization).toBe(`Basic ${Buffer.from('api:key-test').toString('base64')}`);
    expect(request.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(Object.fromEntries(new URLSearchParams(request.body))).toEqual({
      from: 'EDM News <news@edm.example.com>',
      to: 'Ada Reader <reader@example.org>',
      subject: 'Our spring offers',
      text: sampleMail().text,
      html: sampleMail().html,
      'h:Message-Id': `<${SAMPLE_TRACKING_ID}@edm.example.com>`,
      'h:X-EDM-Tracking-Id': SAMPLE_TRACKING_ID,
      'h:List-Unsubscribe': sampleMail().headers['List-Unsubscribe'],
      'h:List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
      'v:edm_tracking_id': SAMPLE_TRACKING_ID,
      'v:edm_task_id': SAMPLE_TASK_ID,
    });
  });

  it('takes the answered id without its angle brackets', async () => {
    expect(await senderFor(server.baseUrl).send(sampleMail())).toEqual({
      kind: 'sent',
      providerMessageId: '20250301120000.1.C0FFEE@mg.edm.example.com',
    });
  });

  it('treats an invalid recipient address as permanent', async () => {
    server.respondWith(
      reply(400, { message: "'to' parameter is not a valid address. please check documentation" }),
    );

    expect(await senderFor(server.baseUrl).send(sampleMail())).toEqual({
      kind: 'permanent',
      reason: "HTTP 400: 'to' parameter is not a valid address. please check documentation",
    });
  });

  it('treats an unknown sending domain as a problem of the account', async () => {
    server.respondWith(reply(404, { message: 'Domain not found: mg.edm.example.com' }));

    expect((await senderFor(server.baseUrl).send(sampleMail())).kind).toBe('account');
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
