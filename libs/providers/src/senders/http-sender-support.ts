import { z } from 'zod';

export const DEFAULT_HTTP_TIMEOUT_MS = 15_000;

export const httpUrlSchema = z.url({ protocol: /^https?$/ });

export const timeoutMsSchema = z.number().int().positive().max(300_000);

/**
 * `baseUrl` lets a regional endpoint or a test server stand in (SPEC Appendix A). Providers wrap this shape in a
 * loose object because a service's options also carry settings that are not the sender's, such as webhook
 * verification secrets, and those must survive validation.
 */
export const httpSenderOptionsShape = (defaultBaseUrl: string) => ({
  baseUrl: httpUrlSchema.default(defaultBaseUrl),
  timeoutMs: timeoutMsSchema.default(DEFAULT_HTTP_TIMEOUT_MS),
});

/** Joins without `new URL(path, base)`, which would drop a path prefix on the base (e.g. behind a proxy). */
export const joinUrl = (baseUrl: string, path: string): string => `${baseUrl.replace(/\/+$/, '')}${path}`;

export const basicAuthorization = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** Providers' error bodies are not always JSON; a body that is not parses to undefined. */
export function parseJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}
