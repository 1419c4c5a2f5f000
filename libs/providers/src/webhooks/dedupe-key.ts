import { createHash } from 'node:crypto';
import type { WebhookProvider } from './parsed-mail-event';

/** Sorted keys, no whitespace: the same event always hashes the same, however the provider ordered it. */
export const canonicalJson = (value: unknown): string => {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
};

/** Used when the provider sends no unique event id. */
export const hashDedupeKey = (provider: WebhookProvider, event: unknown): string =>
  `${provider}:sha256:${createHash('sha256').update(canonicalJson(event)).digest('hex')}`;

export const idDedupeKey = (provider: WebhookProvider, ...parts: string[]): string =>
  `${provider}:id:${parts.map(encodeURIComponent).join(':')}`;
