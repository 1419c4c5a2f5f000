import { IncomingHttpHeaders, ServerResponse, createServer } from 'node:http';
import { Server, Socket, createServer as createTcpServer } from 'node:net';
import { SendOutcomeKind } from '../mail-sender';

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** Answers one request, after its whole body was read. */
export type Responder = (request: ReceivedRequest, response: ServerResponse) => void;

export interface LocalHttpServer {
  baseUrl: string;
  requests: ReceivedRequest[];
  respondWith(responder: Responder): void;
  close(): Promise<void>;
}

/** A provider stand-in on 127.0.0.1 with an ephemeral port. */
export async function startLocalHttpServer(responder: Responder = reply(200, {})): Promise<LocalHttpServer> {
  let respond = responder;
  const requests: ReceivedRequest[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const received: ReceivedRequest = {
        method: request.method ?? '',
        path: request.url ?? '',
        headers: request.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      requests.push(received);
      respond(received, response);
    });
  });
  const port = await listen(server);
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    requests,
    respondWith: (next) => {
      respond = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export const reply =
  (status: number, body: unknown, headers: Record<string, string> = {}): Responder =>
  (_request, response) => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    response.writeHead(status, { 'content-type': 'application/json', ...headers });
    response.end(text);
  };

/** Reads the whole request, then drops the connection without a word: the provider may have acted on it. */
export const destroyAfterBody: Responder = (_request, response) => {
  response.socket?.destroy();
};

/** Reads the whole request and never answers. */
export const neverAnswer: Responder = () => undefined;

/** The failures every HTTP provider classifies the same way, whatever its error bodies look like. */
export const COMMON_HTTP_FAILURES: { name: string; respond: Responder; expected: SendOutcomeKind }[] = [
  { name: '401 Unauthorized', respond: reply(401, { message: 'bad credentials' }), expected: 'account' },
  {
    name: '429 Too Many Requests',
    respond: reply(429, { message: 'slow down' }, { 'retry-after': '7' }),
    expected: 'transient',
  },
  { name: '503 Service Unavailable', respond: reply(503, 'upstream down'), expected: 'transient' },
  { name: 'socket destroyed after the body was read', respond: destroyAfterBody, expected: 'ambiguous' },
];

/** An http URL on which nothing listens (the port was free a moment ago). */
export async function unusedBaseUrl(): Promise<string> {
  const server = createTcpServer();
  const port = await listen(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

/**
 * Accepts TCP connections and never says anything: an https client stays stuck in its TLS handshake, that is,
 * before any byte of its request was sent.
 */
export async function startSilentTcpServer(): Promise<{ httpsBaseUrl: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  const port = await listen(server);
  return {
    httpsBaseUrl: `https://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

function listen(server: Server): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address && typeof address === 'object') resolve(address.port);
      else reject(new Error(`unexpected server address ${String(address)}`));
    });
  });
}
