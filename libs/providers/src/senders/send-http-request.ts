import { AsyncLocalStorage } from 'node:async_hooks';
import { subscribe } from 'node:diagnostics_channel';
import { HttpFailure } from './classify-http-failure';
import { errorMessage, propertyOf } from './error-message';

export interface HttpRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

export type HttpExchange =
  | { kind: 'answered'; status: number; headers: Headers; body: string }
  | { kind: 'failed'; failure: HttpFailure };

/**
 * POSTs with the global fetch and reports, when no answer comes, whether the request had been fully written.
 * fetch's own errors cannot tell a timeout while connecting from a timeout while waiting for the answer, yet
 * one is safe to resend and the other is not. Node's bundled undici publishes each request's progress on
 * diagnostics channels; the request object it creates is tied to this call through AsyncLocalStorage.
 */
export async function sendHttpRequest(request: HttpRequest): Promise<HttpExchange> {
  observeUndiciRequests();
  const progress: RequestProgress = { written: false };
  const timeout = AbortSignal.timeout(request.timeoutMs);
  const signal = request.signal ? AbortSignal.any([request.signal, timeout]) : timeout;
  let response: Response;
  try {
    response = await progressOfCurrentRequest.run(progress, () =>
      // Redirects are not followed: a POST turned into a GET elsewhere would be neither sent nor failed.
      fetch(request.url, {
        method: 'POST',
        headers: request.headers,
        body: request.body,
        signal,
        redirect: 'manual',
      }),
    );
  } catch (error) {
    return {
      kind: 'failed',
      failure: {
        stage: 'transport',
        requestWritten: progress.written,
        reason: describe(error, request, timeout),
      },
    };
  }
  try {
    const body = await response.text();
    return { kind: 'answered', status: response.status, headers: response.headers, body };
  } catch (error) {
    const reason = `answer body lost: ${describe(error, request, timeout)}`;
    // A refusal stays a refusal; an acceptance whose body (and message id) was lost is ambiguous.
    return {
      kind: 'failed',
      failure:
        response.status >= 300
          ? {
              stage: 'response',
              status: response.status,
              reason,
              retryAfter: response.headers.get('retry-after'),
            }
          : { stage: 'transport', requestWritten: true, reason },
    };
  }
}

interface RequestProgress {
  written: boolean;
}

const progressOfCurrentRequest = new AsyncLocalStorage<RequestProgress>();
const progressByUndiciRequest = new WeakMap<object, RequestProgress>();
let observing = false;

function observeUndiciRequests(): void {
  if (observing) return;
  observing = true;
  // Published synchronously inside fetch's own call chain, so the async context is still this request's.
  subscribe('undici:request:create', (message) => {
    const progress = progressOfCurrentRequest.getStore();
    const undiciRequest = undiciRequestOf(message);
    if (progress && undiciRequest) progressByUndiciRequest.set(undiciRequest, progress);
  });
  // Published once headers and body were handed to the socket; socket events run in whatever async context
  // opened the (possibly reused) connection, hence the lookup by request object rather than by context.
  subscribe('undici:request:bodySent', (message) => {
    const undiciRequest = undiciRequestOf(message);
    const progress = undiciRequest && progressByUndiciRequest.get(undiciRequest);
    if (progress) progress.written = true;
  });
}

function undiciRequestOf(message: unknown): object | undefined {
  if (typeof message !== 'object' || message === null || !('request' in message)) return undefined;
  const { request } = message;
  return typeof request === 'object' && request !== null ? request : undefined;
}

function describe(error: unknown, request: HttpRequest, timeout: AbortSignal): string {
  if (request.signal?.aborted) return 'aborted by the caller';
  if (timeout.aborted) return `timed out after ${request.timeoutMs} ms`;
  // fetch says only "fetch failed"; what failed (ECONNREFUSED, ENOTFOUND, ...) is in its cause.
  const cause = propertyOf(error, 'cause');
  if (cause === undefined) return errorMessage(error);
  const code = propertyOf(cause, 'code');
  return `${errorMessage(error)} (${typeof code === 'string' ? `${code} ` : ''}${errorMessage(cause)})`;
}
