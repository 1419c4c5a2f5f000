import { createServer, request as httpRequest, Server } from 'node:http';
import { AddressInfo, connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import express from 'express';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { JsonLogger, Metrics } from '@edm/observability';
import { DomainError, MAX_BODY_DEPTH, RateLimits } from '@edm/platform';
import { IncomingWebhook } from './webhook-intake.service';
import { installWebhookRoute, webhookRouteOf } from './webhook-route';

const SERVICE = '01a24226-920c-7151-80b4-2d12bed70c4d';
const LIMIT = 1_024;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * The webhook route on a real HTTP server, with Express behind it answering whatever the route
 * hands over ({"by":"express"}) and a recorded intake in place of the database.
 */
describe('webhook route in front of Express', () => {
  let server: Server;
  let base: string;
  const received: IncomingWebhook[] = [];
  let answer: (incoming: IncomingWebhook) => Promise<{ id: string }>;
  const logged: string[] = [];
  const limits = new RateLimits(
    [{ name: 'webhooks', pathPrefix: '/api/webhooks/', perSecond: 1, burst: 3 }],
    new Metrics('test'),
  );

  beforeAll(async () => {
    const app = express();
    app.use((_request, response) => void response.status(299).json({ by: 'express' }));
    server = createServer(app);
    const nest = {
      getHttpServer: () => server,
      getHttpAdapter: () => ({ getInstance: () => app }),
    } as unknown as NestExpressApplication;
    const logger = new JsonLogger('test', 'error');
    logger.event = (_level: string, message: string) => void logged.push(message);
    installWebhookRoute(nest, {
      receive: (incoming) => {
        received.push(incoming);
        return answer(incoming);
      },
      bodyLimitBytes: LIMIT,
      platform: { logger, rateLimits: null },
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((resolve) => server.close(resolve)));
  beforeEach(() => {
    received.length = 0;
    logged.length = 0;
    answer = async () => ({ id: 'stored-id' });
  });

  const post = (
    path: string,
    body: string | Buffer,
    headers: Record<string, string> = { 'content-type': 'application/json' },
    method = 'POST',
  ): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = httpRequest(`${base}${path}`, { method, headers }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
      });
      req.on('error', reject);
      req.end(body);
    });

  it('stores a provider callback through the intake and answers its id', async () => {
    const body = '{"message_id":"m-1","status":{"message_status":"delivered"}}';
    const res = await post(`/api/webhooks/sandbox/${SERVICE}?attempt=2`, body, {
      'content-type': 'application/json',
      'x-custom': 'kept',
    });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ id: 'stored-id' });
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({
      provider: 'sandbox',
      serviceId: SERVICE,
      path: `/api/webhooks/sandbox/${SERVICE}`,
      contentType: 'application/json',
      body,
    });
    expect(received[0].headers['x-custom']).toBe('kept');

    const generic = await post('/api/webhooks/mail-event/', body);
    expect(generic.status).toBe(200);
    expect(received[1]).toMatchObject({
      provider: 'engagelab',
      serviceId: null,
      path: '/api/webhooks/mail-event/',
    });
  });

  it('hands every other request, and webhooks in an uncommon form, to Express', async () => {
    const json = { 'content-type': 'application/json' };
    const cases: [string, string, string | Buffer, Record<string, string>][] = [
      ['GET', `/api/webhooks/sandbox/${SERVICE}`, '', {}],
      ['POST', '/api/v1/tasks', '{}', json],
      ['POST', `/API/Webhooks/sandbox/${SERVICE}`, '{}', json],
      ['POST', `/api/webhooks/sandbox/%7B${SERVICE}`, '{}', json],
      ['POST', `/api/webhooks/sandbox/${SERVICE}/extra`, '{}', json],
      ['POST', `/api/webhooks/sandbox/${SERVICE}`, gzipSync('{}'), { ...json, 'content-encoding': 'gzip' }],
      ['POST', `/api/webhooks/sandbox/${SERVICE}`, '{}', { 'content-type': 'text/plain; charset=latin1' }],
    ];
    for (const [method, path, body, headers] of cases) {
      const res = await post(path, body, headers, method);
      expect({ method, path, headers, status: res.status, body: res.body }).toEqual({
        method,
        path,
        headers,
        status: 299,
        body: '{"by":"express"}',
      });
    }
    expect(received).toHaveLength(0);
    // UTF-8 named explicitly, quoted or not, stays on the route.
    for (const type of [
      'application/json; charset=utf-8',
      'text/plain; charset="UTF-8"',
      'text/plain;charset=utf8',
    ])
      expect((await post(`/api/webhooks/sandbox/${SERVICE}`, '{}', { 'content-type': type })).status).toBe(
        200,
      );
  });

  it('refuses a body over the limit with 413, declared or streamed, without calling the intake', async () => {
    const big = 'x'.repeat(LIMIT + 1);
    const declared = await post(`/api/webhooks/sandbox/${SERVICE}`, big);
    expect(declared.status).toBe(413);
    expect(JSON.parse(declared.body)).toEqual({
      error: { code: 'PAYLOAD_TOO_LARGE', message: 'request body is too large' },
    });
    const streamed = await new Promise<Answer>((resolve, reject) => {
      const req = httpRequest(
        `${base}/api/webhooks/sandbox/${SERVICE}`,
        { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } },
        (res) => {
          let text = '';
          res.on('data', (chunk: Buffer) => (text += chunk.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
        },
      );
      req.on('error', reject);
      req.write(big.slice(0, 600));
      setTimeout(() => req.end(big.slice(600)), 20);
    });
    expect(streamed.status).toBe(413);
    // A client that declares a large body and is still writing it when the server has decided:
    // the 413 waits for the end of the body, so the connection is not closed under the client
    // while it writes (which it would see as a broken pipe, not as the 413).
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    let replied = '';
    socket.on('data', (c: Buffer) => (replied += c.toString()));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(
      `POST /api/webhooks/sandbox/${SERVICE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${4 * LIMIT}\r\n\r\n${'z'.repeat(2 * LIMIT)}`,
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(replied).toBe('');
    socket.write('z'.repeat(2 * LIMIT));
    await closed;
    expect(replied).toMatch(/^HTTP\/1\.1 413 .*\r\nConnection: close\r\n/s);
    expect(received).toHaveLength(0);
    // The server answers the next request as before.
    expect((await post(`/api/webhooks/sandbox/${SERVICE}`, 'y'.repeat(LIMIT))).status).toBe(200);
  });

  it('refuses a body nested deeper than the limit with 400 and drops a UTF-8 BOM as the body parser does', async () => {
    const nested = '['.repeat(MAX_BODY_DEPTH + 1) + ']'.repeat(MAX_BODY_DEPTH + 1);
    const deep = await post(`/api/webhooks/sandbox/${SERVICE}`, nested);
    expect(deep.status).toBe(400);
    expect(JSON.parse(deep.body).error.code).toBe('VALIDATION_FAILED');
    expect(received).toHaveLength(0);

    const withBom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"é":1}')]);
    expect((await post(`/api/webhooks/sandbox/${SERVICE}`, withBom)).status).toBe(200);
    expect(received[0].body).toBe('{"é":1}');
  });

  it("answers the intake's refusals in the platform's error shape, and logs only unexpected failures", async () => {
    answer = async () => {
      throw new DomainError('UNAVAILABLE', 'the webhook could not be stored; retry later');
    };
    const unavailable = await post(`/api/webhooks/sandbox/${SERVICE}`, '{}');
    expect(unavailable.status).toBe(503);
    expect(JSON.parse(unavailable.body)).toEqual({
      error: { code: 'UNAVAILABLE', message: 'the webhook could not be stored; retry later' },
    });
    expect(logged).toEqual([]);

    answer = async () => {
      throw new Error('secret internals');
    };
    const broken = await post(`/api/webhooks/sandbox/${SERVICE}`, '{}');
    expect(broken.status).toBe(500);
    expect(broken.body).not.toContain('secret');
    expect(JSON.parse(broken.body)).toEqual({ error: { code: 'INTERNAL', message: 'internal error' } });
    expect(logged).toEqual(['unhandled error']);
  });

  it('survives a client that goes away in the middle of its body', async () => {
    await new Promise<void>((resolve) => {
      const req = httpRequest(`${base}/api/webhooks/sandbox/${SERVICE}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': '500' },
      });
      req.on('error', () => resolve());
      req.write('{"partial":');
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 20);
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(received).toHaveLength(0);
    expect((await post(`/api/webhooks/sandbox/${SERVICE}`, '{}')).status).toBe(200);
  });

  it('draws on the shared rate limit before reading the body', async () => {
    const app = express();
    const limited = createServer(app);
    const nest = {
      getHttpServer: () => limited,
      getHttpAdapter: () => ({ getInstance: () => app }),
    } as unknown as NestExpressApplication;
    const calls: string[] = [];
    installWebhookRoute(nest, {
      receive: async (incoming) => (calls.push(incoming.path), { id: 'x' }),
      bodyLimitBytes: LIMIT,
      platform: { logger: new JsonLogger('test', 'error'), rateLimits: limits },
    });
    await new Promise<void>((resolve) => limited.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(limited.address() as AddressInfo).port}/api/webhooks/sandbox/${SERVICE}`;
    try {
      const statuses: number[] = [];
      const retryAfter: (string | null)[] = [];
      for (let i = 0; i < 5; i += 1) {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{}',
        });
        statuses.push(res.status);
        retryAfter.push(res.headers.get('retry-after'));
        if (res.status === 429)
          expect(((await res.json()) as { error: { code: string } }).error.code).toBe('RATE_LIMITED');
        else await res.text();
      }
      expect(statuses).toEqual([200, 200, 200, 429, 429]);
      expect(retryAfter.slice(3)).toEqual(['1', '1']);
      expect(calls).toHaveLength(3);
    } finally {
      await new Promise((resolve) => limited.close(resolve));
    }
  });

  it('matches only the two provider routes, by method, path, coding and charset', () => {
    const route = (method: string, url: string, headers: Record<string, string> = {}) =>
      webhookRouteOf({ method, url, headers });
    expect(route('POST', '/api/webhooks/mail-event')).toEqual({
      provider: 'engagelab',
      serviceId: null,
      path: '/api/webhooks/mail-event',
    });
    expect(route('POST', `/api/webhooks/ses/${SERVICE}/?x=1`)).toEqual({
      provider: 'ses',
      serviceId: SERVICE,
      path: `/api/webhooks/ses/${SERVICE}/`,
    });
    expect(route('POST', '/api/webhooks/mail-events')).toBeNull();
    expect(route('POST', '/api/webhooks/mail-event/x/y')).toBeNull();
    expect(route('PUT', '/api/webhooks/mail-event')).toBeNull();
    expect(route('POST', '/api/webhooks/mail-event', { 'content-encoding': 'identity' })).not.toBeNull();
    expect(route('POST', '/api/webhooks/mail-event', { 'content-encoding': 'br' })).toBeNull();
  });
});
