export type Json = Record<string, unknown>;

/**
 * One API request with a bearer key, JSON in and out; any answer but a 2xx throws with (the start
 * of) its body. A body that is not JSON comes back as `{ text }`.
 */
export async function callApi(
  baseUrl: string,
  key: string,
  method: string,
  path: string,
  body?: unknown,
  { timeoutMs }: { timeoutMs?: number } = {},
): Promise<Json> {
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined,
  });
  const text = await response.text();
  let json: Json;
  try {
    json = JSON.parse(text) as Json;
  } catch {
    json = { text };
  }
  if (response.status >= 300)
    throw new Error(`${method} ${path} answered ${response.status}: ${JSON.stringify(json).slice(0, 500)}`);
  return json;
}

/**
 * The API as the suites and benches drive it: plain calls, a sandbox service that sends at once
 * and calls nothing back unless told otherwise, and a task to `count` new contacts tagged `tag`.
 * URL and key are read at each call, so a client can be made before the API has started.
 */
export function apiClient(baseUrl: () => string, key: () => string) {
  const call = (method: string, path: string, body?: unknown) =>
    callApi(baseUrl(), key(), method, path, body);
  const sandboxService = async (name: string, options: Json = {}, extra: Json = {}) =>
    (
      await call('POST', '/api/v1/services', {
        name,
        provider: 'sandbox',
        from: { email: 'news@example.com' },
        pace: { intervalMs: 20 },
        options: { latencyMs: 0, callbacks: { delivered: 0 }, ...options },
        ...extra,
      })
    ).id as string;
  const taskToTag = async (tag: string, count: number, serviceIds: string[]) => {
    await call('POST', '/api/v1/contacts', {
      contacts: Array.from({ length: count }, (_, i) => ({ email: `${tag}-${i}@example.com`, tags: [tag] })),
    });
    return (
      await call('POST', '/api/v1/tasks', {
        name: tag,
        subject: 's',
        text: 't',
        recipients: { tags: [tag] },
        serviceIds,
      })
    ).id as string;
  };
  return { call, sandboxService, taskToTag };
}
