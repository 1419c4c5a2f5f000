import { signAwsRequest } from './aws-sigv4';
import { SesSender } from './ses.sender';
import { SAMPLE_TASK_ID, SAMPLE_TRACKING_ID, sampleMail } from './testing/sample-mail';
import {
  COMMON_HTTP_FAILURES,
  LocalHttpServer,
  neverAnswer,
  reply,
  startLocalHttpServer,
  unusedBaseUrl,
} from './testing/local-http-server';

describe('SesSender', () => {
  const credentials = { region: 'eu-west-1', accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret-key' };
  const at = new Date('2025-03-01T12:00:00Z');
  let server: LocalHttpServer;

  beforeEach(async () => {
    server = await startLocalHttpServer(
      reply(200, { MessageId: '0102018e0fb1f1a2-5c1d2e3f-0000-0000-0000-000000000000-000000' }),
    );
  });

  afterEach(() => server.close());

  const senderFor = (baseUrl: string, timeoutMs?: number) =>
    new SesSender(
      { credentials, options: { baseUrl, timeoutMs, configurationSetName: 'edm-events' } },
      () => at,
    );

  const sesError = (status: number, type: string, message: string) =>
    reply(
      status,
      { message },
      { 'x-amzn-errortype': `${type}:http://internal.amazon.com/coral/com.amazon.coral.service/` },
    );

  it('posts SendEmail with Simple content, our headers and the tracking id as a tag', async () => {
    await senderFor(server.baseUrl).send(sampleMail());

    const [request] = server.requests;
    expect(request.method).toBe('POST');
    expect(request.path).toBe('/v2/email/outbound-emails');
    expect(JSON.parse(request.body)).toEqual({
      FromEmailAddress: 'EDM News <news@edm.example.com>',
      Destination: { ToAddresses: ['Ada Reader <reader@example.org>'] },
      Content: {
        Simple: {
          Subject: { Data: 'Our spring offers', Charset: 'UTF-8' },
          Body: {
            Html: { Data: sampleMail().html, Charset: 'UTF-8' },
            Text: { Data: sampleMail().text, Charset: 'UTF-8' },
          },
          Headers: [
            { Name: 'X-EDM-Tracking-Id', Value: SAMPLE_TRACKING_ID },
            { Name: 'List-Unsubscribe', Value: sampleMail().headers['List-Unsubscribe'] },
            { Name: 'List-Unsubscribe-Post', Value: 'List-Unsubscribe=One-Click' },
          ],
        },
      },
      EmailTags: [
        { Name: 'edm_tracking_id', Value: SAMPLE_TRACKING_ID },
        { Name: 'edm_task_id', Value: SAMPLE_TASK_ID },
      ],
      ConfigurationSetName: 'edm-events',
    });
  });

  it('signs what goes on the wire with SigV4 for ses in the region', async () => {
    await senderFor(server.baseUrl).send(sampleMail());

    const [request] = server.requests;
    expect(request.headers['x-amz-date']).toBe('20250301T120000Z');
    expect(request.headers.authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/20250301\/eu-west-1\/ses\/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=[0-9a-f]{64}$/,
    );
    // Recomputed from the received host, path and body, as SES would verify it.
    const expected = signAwsRequest(
      {
        method: 'POST',
        url: `http://${request.headers.host}${request.path}`,
        headers: { 'content-type': String(request.headers['content-type']) },
        body: request.body,
        region: 'eu-west-1',
        service: 'ses',
      },
      credentials,
      at,
    );
    expect(request.headers.authorization).toBe(expected.headers.authorization);
  });

  it('leaves out tags SES would refuse rather than failing the send', async () => {
    await senderFor(server.baseUrl).send(
      sampleMail({ customArgs: { edm_tracking_id: SAMPLE_TRACKING_ID, campaign: 'spring sale!' } }),
    );

    expect(JSON.parse(server.requests[0].body).EmailTags).toEqual([
      { Name: 'edm_tracking_id', Value: SAMPLE_TRACKING_ID },
    ]);
  });

  it('encodes a display name beyond ASCII as SES requires', async () => {
    await senderFor(server.baseUrl).send(
      sampleMail({ from: { email: 'news@edm.example.com', name: 'Zoë' } }),
    );

    expect(JSON.parse(server.requests[0].body).FromEmailAddress).toBe(
      '=?UTF-8?B?Wm/Dqw==?= <news@edm.example.com>',
    );
  });

  it('takes MessageId as the provider message id', async () => {
    expect(await senderFor(server.baseUrl).send(sampleMail())).toEqual({
      kind: 'sent',
      providerMessageId: '0102018e0fb1f1a2-5c1d2e3f-0000-0000-0000-000000000000-000000',
    });
  });

  it.each([
    ['an invalid recipient', sesError(400, 'BadRequestException', 'Illegal address'), 'permanent'],
    [
      'a rejected message',
      sesError(400, 'MessageRejected', 'Email address is not verified: reader@example.org'),
      'permanent',
    ],
    [
      'an unverified sender',
      sesError(400, 'MessageRejected', 'Email address is not verified: news@edm.example.com'),
      'account',
    ],
    ['a suspended account', sesError(400, 'AccountSuspendedException', 'Account suspended'), 'account'],
    ['sending paused', sesError(400, 'SendingPausedException', 'Sending is paused'), 'account'],
    [
      'a bad signature',
      sesError(403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match'),
      'account',
    ],
    ['the daily quota', sesError(400, 'ThrottlingException', 'Daily message quota exceeded'), 'account'],
    ['the sending rate', sesError(400, 'ThrottlingException', 'Maximum sending rate exceeded'), 'transient'],
    [
      'an error type in the body',
      reply(400, { __type: 'com.amazonaws.ses#AccountSuspendedException', message: 'x' }),
      'account',
    ],
  ])('classifies %s by its error type', async (_name, respond, expected) => {
    server.respondWith(respond);

    expect((await senderFor(server.baseUrl).send(sampleMail())).kind).toBe(expected);
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
