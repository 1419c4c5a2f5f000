import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { NestExpressApplication } from '@nestjs/platform-express';
import proxyaddr from 'proxy-addr';
import { describeError, isLoggedError, MAX_BODY_DEPTH, nestsDeeperThan, PlatformParts } from '@edm/platform';
import { IncomingWebhook } from './webhook-intake.service';

/**
 * The two provider routes in their common form: `POST /api/webhooks/mail-event` and
 * `POST /api/webhooks/<provider>/<service id>`, an optional trailing slash and query string.
 * Nothing to decode in them, so what Express would route there is exactly what this matches.
 */
const WEBHOOK_PATH = /^\/api\/webhooks\/(?:(mail-event)|([a-z]{1,32})\/([0-9A-Fa-f-]{1,64}))\/?(?:\?|$)/;
/** Bodies this route decodes itself: no content coding, UTF-8 (the default) or no charset. */
const UTF8_CHARSET = /;\s*charset\s*=\s*"?utf-?8"?\s*(?:;|$)/i;
const ANY_CHARSET = /;\s*charset\s*=/i;
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

export interface WebhookRouteOptions {
  receive: (incoming: IncomingWebhook) => Promise<{ id: string }>;
  bodyLimitBytes: number;
  platform: PlatformParts;
}

/** The route a request is for, when it is one this listener answers; null hands it to Express. */
export function webhookRouteOf(
  request: Pick<IncomingMessage, 'method' | 'url' | 'headers'>,
): { provider: string; serviceId: string | null; path: string } | null {
  if (request.method !== 'POST' || !request.url) return null;
  const match = WEBHOOK_PATH.exec(request.url);
  if (!match) return null;
  const encoding = request.headers['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') return null;
  const type = request.headers['content-type'];
  if (type !== undefined && ANY_CHARSET.test(type) && !UTF8_CHARSET.test(type)) return null;
  const query = request.url.indexOf('?');
  const path = query < 0 ? request.url : request.url.slice(0, query);
  return match[1]
    ? { provider: 'engagelab', serviceId: null, path }
    : { provider: match[2], serviceId: match[3], path };
}

/**
 * Webhook intake answered on the HTTP server itself, in front of Express: the hot path of a
 * provider's callbacks, at thousands of requests a second, skips Express's router, body parser
 * and response helpers, which cost more than the intake does. Everything else, and any webhook
 * request in an uncommon form (a content coding, a charset other than UTF-8, an escaped path),
 * goes to Express, whose controller gives the same answers. Same rules as there: the webhook rate
 * limit before the body is read, the body limit (413, also for a body that only grows past it
 * while streaming), no nesting deeper than MAX_BODY_DEPTH, the UTF-8 BOM dropped as the body
 * parser drops it, and the platform's JSON error shape.
 */
export function installWebhookRoute(app: NestExpressApplication, options: WebhookRouteOptions): void {
  const server = app.getHttpServer() as Server;
  const express = app.getHttpAdapter().getInstance() as { get(setting: string): unknown };
  const trust = express.get('trust proxy fn') as (address: string, index: number) => boolean;
  const others = server.listeners('request') as ((
    request: IncomingMessage,
    response: ServerResponse,
  ) => void)[];
  server.removeAllListeners('request');
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const route = webhookRouteOf(request);
    if (!route) {
      for (const listener of others) listener.call(server, request, response);
      return;
    }
    const refusal = options.platform.rateLimits?.check(route.path, () => proxyaddr(request, trust));
    if (refusal) {
      respond(response, 429, refusal.body, { 'Retry-After': String(refusal.retryAfterSeconds) });
      request.resume();
      return;
    }
    readBody(
      request,
      options.bodyLimitBytes,
      (body) => {
        if (body === null) return;
        if (body === 'too large') {
          const [status, answer] = describeError({ type: 'entity.too.large' });
          // Answered once the client has finished sending, as Express does: a client still
          // writing when the connection closes under it gets a broken pipe, not the 413.
          void discardRest(request, DISCARD_LIMIT_FACTOR * options.bodyLimitBytes).then(() =>
            respond(response, status, answer, { Connection: 'close' }),
          );
          return;
        }
        if (nestsDeeperThan(body, MAX_BODY_DEPTH)) {
          const [status, answer] = describeError({ type: 'entity.too.deep' });
          respond(response, status, answer);
          return;
        }
        const text = (
          body[0] === BOM[0] && body.subarray(0, 3).equals(BOM) ? body.subarray(3) : body
        ).toString('utf8');
        options
          .receive({
            provider: route.provider,
            serviceId: route.serviceId,
            path: route.path,
            contentType: request.headers['content-type'],
            headers: request.headers,
            body: text,
          })
          .then(
            (stored) => respond(response, 200, stored),
            (error: unknown) => {
              const [status, answer] = describeError(error);
              if (isLoggedError(status))
                options.platform.logger.event('error', 'unhandled error', {
                  error: error instanceof Error ? error.stack : String(error),
                });
              respond(response, status, answer);
            },
          );
      },
      () => response.destroy(),
    );
  });
}

/** A refused body is read and dropped up to this many times the limit; past that it is cut off. */
const DISCARD_LIMIT_FACTOR = 8;

/**
 * Reads and drops the rest of a request's body; resolves at its end, when the client goes away,
 * or once more than `limit` bytes were dropped (the answer then goes out, and the connection
 * closes under a client that goes on sending).
 */
function discardRest(request: IncomingMessage, limit: number): Promise<void> {
  if (request.complete) return Promise.resolve();
  return new Promise((resolve) => {
    let dropped = 0;
    const done = () => {
      request.off('data', onData);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      dropped += chunk.length;
      if (dropped > limit) done();
    };
    request.on('data', onData);
    request.once('end', done);
    request.once('close', done);
    request.resume();
  });
}

/**
 * Calls `done` with the body as received, 'too large' as soon as it passes the limit (the rest is
 * left to discardRest), or null when the client went away before its end; `failed` on a stream
 * error. Callbacks, not a promise: this runs for every webhook.
 */
function readBody(
  request: IncomingMessage,
  limit: number,
  done: (body: Buffer | 'too large' | null) => void,
  failed: () => void,
): void {
  const declared = Number(request.headers['content-length']);
  if (declared > limit) return done('too large');
  const chunks: Buffer[] = [];
  let length = 0;
  let settled = false;
  const settle = (body: Buffer | 'too large' | null) => {
    if (settled) return;
    settled = true;
    done(body);
  };
  const onData = (chunk: Buffer) => {
    length += chunk.length;
    if (length > limit) {
      request.off('data', onData);
      settle('too large');
      return;
    }
    chunks.push(chunk);
  };
  request.on('data', onData);
  request.on('end', () => settle(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, length)));
  // A client gone before the end closes the request ('close' follows 'aborted'); after 'end',
  // these change nothing: the body was settled.
  request.on('close', () => settle(null));
  request.on('error', () => {
    if (settled) return;
    settled = true;
    failed();
  });
}

/** Answers with JSON; `headers` is this answer's own object, completed here. */
function respond(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (response.headersSent || response.destroyed) return;
  const json = JSON.stringify(body);
  headers['Content-Type'] = 'application/json; charset=utf-8';
  headers['Content-Length'] = String(Buffer.byteLength(json));
  response.writeHead(status, headers);
  response.end(json);
}
