import { HttpExchange, sendHttpRequest } from './send-http-request';
import {
  LocalHttpServer,
  destroyAfterBody,
  neverAnswer,
  reply,
  startLocalHttpServer,
  startSilentTcpServer,
  unusedBaseUrl,
} from './testing/local-http-server';

const post = (url: string, timeoutMs = 2_000, signal?: AbortSignal): Promise<HttpExchange> =>
  sendHttpRequest({
    url,
    headers: { 'content-type': 'application/json' },
    body: '{"hello":"world"}',
    timeoutMs,
    signal,
  });

describe('sendHttpRequest', () => {
  let server: LocalHttpServer;

  beforeEach(async () => {
    server = await startLocalHttpServer();
  });

  afterEach(() => server.close());

  it('returns the answer of the provider', async () => {
    server.respondWith(reply(202, { ok: true }, { 'x-message-id': 'abc' }));

    const exchange = await post(`${server.baseUrl}/send`);

    expect(exchange).toMatchObject({ kind: 'answered', status: 202, body: '{"ok":true}' });
    expect(exchange.kind === 'answered' && exchange.headers.get('x-message-id')).toBe('abc');
    expect(server.requests[0]).toMatchObject({ method: 'POST', path: '/send', body: '{"hello":"world"}' });
  });

  it('reports a refused connection as not written', async () => {
    const exchange = await post(`${await unusedBaseUrl()}/send`);

    expect(exchange).toMatchObject({
      kind: 'failed',
      failure: { stage: 'transport', requestWritten: false },
    });
    expect(exchange.kind === 'failed' && exchange.failure.reason).toMatch(/ECONNREFUSED/);
  });

  it('reports a connection dropped after the body was read as written', async () => {
    server.respondWith(destroyAfterBody);

    const exchange = await post(`${server.baseUrl}/send`);

    expect(exchange).toMatchObject({ kind: 'failed', failure: { stage: 'transport', requestWritten: true } });
  });

  it('reports a timeout while waiting for the answer as written', async () => {
    server.respondWith(neverAnswer);

    const exchange = await post(`${server.baseUrl}/send`, 200);

    expect(exchange).toEqual({
      kind: 'failed',
      failure: { stage: 'transport', requestWritten: true, reason: 'timed out after 200 ms' },
    });
  });

  it('reports a timeout during the TLS handshake as not written', async () => {
    const silent = await startSilentTcpServer();
    try {
      const exchange = await post(`${silent.httpsBaseUrl}/send`, 200);

      expect(exchange).toEqual({
        kind: 'failed',
        failure: { stage: 'transport', requestWritten: false, reason: 'timed out after 200 ms' },
      });
    } finally {
      await silent.close();
    }
  });

  it('reports the caller aborting while waiting for the answer as written', async () => {
    server.respondWith(neverAnswer);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);

    const exchange = await post(`${server.baseUrl}/send`, 5_000, controller.signal);

    expect(exchange).toEqual({
      kind: 'failed',
      failure: { stage: 'transport', requestWritten: true, reason: 'aborted by the caller' },
    });
  });

  it('reports an acceptance whose body was cut off as written, so that it counts as ambiguous', async () => {
    server.respondWith((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
      response.write('{"id":');
      setTimeout(() => response.socket?.destroy(), 20);
    });

    const exchange = await post(`${server.baseUrl}/send`);

    expect(exchange).toMatchObject({ kind: 'failed', failure: { stage: 'transport', requestWritten: true } });
  });

  it('keeps the status of a refusal whose body was cut off', async () => {
    server.respondWith((_request, response) => {
      response.writeHead(503, { 'content-length': '100', 'retry-after': '3' });
      response.write('unavail');
      setTimeout(() => response.socket?.destroy(), 20);
    });

    const exchange = await post(`${server.baseUrl}/send`);

    expect(exchange).toMatchObject({
      kind: 'failed',
      failure: { stage: 'response', status: 503, retryAfter: '3' },
    });
  });

  it('tells concurrent requests apart', async () => {
    let answered = 0;
    server.respondWith((request, response) => {
      if (request.path === '/drop') return response.socket?.destroy();
      answered++;
      reply(200, {})(request, response);
    });
    const refused = await unusedBaseUrl();

    const exchanges = await Promise.all([
      post(`${server.baseUrl}/drop`),
      post(`${refused}/send`),
      post(`${server.baseUrl}/ok`),
      post(`${server.baseUrl}/drop`),
      post(`${refused}/send`),
    ]);

    expect(
      exchanges.map((exchange) => (exchange.kind === 'failed' ? exchange.failure : exchange.status)),
    ).toEqual([
      expect.objectContaining({ requestWritten: true }),
      expect.objectContaining({ requestWritten: false }),
      200,
      expect.objectContaining({ requestWritten: true }),
      expect.objectContaining({ requestWritten: false }),
    ]);
    expect(answered).toBe(1);
  });
});
