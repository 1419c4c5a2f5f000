import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { isMailEventType } from '@edm/domain';
import * as fc from 'fast-check';
import { parseWebhook } from './parse-webhook';
import { WEBHOOK_PROVIDERS, type ParseWebhookResult, type WebhookProvider } from './parsed-mail-event';
import { MAX_WEBHOOK_BODY_CHARS } from './safe-json';

const FIXTURE_DIR = path.resolve(__dirname, '../../../..', '../shared/provider-payloads');

/** Documented bodies per provider, the seeds the structural fuzzing mutates. */
const seedBodies = (provider: WebhookProvider): unknown[] => {
  const prefix = provider === 'ses' ? 'ses-sns-' : `${provider}-`;
  const bodies = readdirSync(FIXTURE_DIR)
    .filter((file) => file.startsWith(prefix) && file.endsWith('.json'))
    .map((file) => (JSON.parse(readFileSync(path.join(FIXTURE_DIR, file), 'utf8')) as { body: unknown }).body)
    .map((body) => (typeof body === 'string' ? (JSON.parse(body) as unknown) : body));
  const sandbox = {
    events: [{ eventId: 'e1', type: 'open', email: 'a@x.example', timestamp: 1700000000000, url: 'u' }],
  };
  return provider === 'sandbox' ? [sandbox] : bodies;
};

type Json = unknown;

const pathsOf = (value: Json, prefix: Array<string | number> = []): Array<Array<string | number>> => {
  const children: Array<[string | number, Json]> = Array.isArray(value)
    ? value.map((v, i) => [i, v])
    : value !== null && typeof value === 'object'
      ? Object.entries(value)
      : [];
  return [prefix, ...children.flatMap(([key, child]) => pathsOf(child, [...prefix, key]))];
};

const replaceAt = (value: Json, at: Array<string | number>, replacement: Json): Json => {
  if (at.length === 0) return replacement;
  const [head, ...rest] = at;
  if (Array.isArray(value)) return value.map((v, i) => (i === head ? replaceAt(v, rest, replacement) : v));
  const record = value as Record<string, Json>;
  return { ...record, [head]: replaceAt(record[head], rest, replacement) };
};

/** A seed with one node (anywhere, SES records included) replaced by arbitrary JSON. */
const mutatedSeed = (provider: WebhookProvider): fc.Arbitrary<string> =>
  fc
    .tuple(fc.constantFrom(...seedBodies(provider)), fc.nat(), fc.jsonValue({ maxDepth: 3 }), fc.boolean())
    .map(([seed, pick, replacement, insideMessage]) => {
      const envelope = seed as Record<string, Json>;
      if (insideMessage && typeof envelope.Message === 'string' && envelope.Message.startsWith('{')) {
        const record = JSON.parse(envelope.Message) as Json;
        const paths = pathsOf(record);
        return JSON.stringify({
          ...envelope,
          Message: JSON.stringify(replaceAt(record, paths[pick % paths.length], replacement)),
        });
      }
      const paths = pathsOf(seed);
      return JSON.stringify(replaceAt(seed, paths[pick % paths.length], replacement));
    });

const expectWellFormed = (provider: WebhookProvider, result: ParseWebhookResult): void => {
  switch (result.kind) {
    case 'invalid':
      expect(typeof result.reason).toBe('string');
      expect(result.reason.length).toBeGreaterThan(0);
      return;
    case 'sns-subscription':
      expect(provider).toBe('ses');
      return;
    case 'events':
      for (const event of result.events) {
        expect(event.provider).toBe(provider);
        expect(Number.isNaN(event.occurredAt.getTime())).toBe(false);
        expect(event.type === null || isMailEventType(event.type)).toBe(true);
        expect(event.dedupeKey.startsWith(`${provider}:`)).toBe(true);
        if (event.recipient !== undefined) expect(event.recipient).toBe(event.recipient.toLowerCase());
        expect(Object.values(event.customArgs).every((v) => typeof v === 'string')).toBe(true);
        expect(event.messageIdCandidates.every((id) => typeof id === 'string' && id !== '')).toBe(true);
      }
  }
};

describe('parseWebhook never throws', () => {
  describe.each(WEBHOOK_PROVIDERS)('%s', (provider) => {
    it('on arbitrary strings', () => {
      fc.assert(
        fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (raw) => {
          expectWellFormed(provider, parseWebhook(provider, raw, {}));
        }),
        { numRuns: 300 },
      );
    });

    it('on arbitrary JSON', () => {
      fc.assert(
        fc.property(fc.json({ maxDepth: 6 }), (raw) => {
          expectWellFormed(provider, parseWebhook(provider, raw, {}));
        }),
        { numRuns: 300 },
      );
    });

    it('on documented payloads with any one node replaced by arbitrary JSON', () => {
      fc.assert(
        fc.property(mutatedSeed(provider), (raw) => {
          expectWellFormed(provider, parseWebhook(provider, raw, {}));
        }),
        { numRuns: 500 },
      );
    });
  });
});

describe('parseWebhook on hostile bodies', () => {
  it.each(WEBHOOK_PROVIDERS)('%s: malformed, oversized and deeply nested bodies are invalid', (provider) => {
    expect(parseWebhook(provider, '{"a":', {})).toMatchObject({
      kind: 'invalid',
      reason: expect.stringMatching(/^malformed JSON/),
    });
    expect(parseWebhook(provider, '', {}).kind).toBe('invalid');
    expect(parseWebhook(provider, ' '.repeat(MAX_WEBHOOK_BODY_CHARS + 1), {})).toEqual({
      kind: 'invalid',
      reason: `body exceeds ${MAX_WEBHOOK_BODY_CHARS} characters`,
    });
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    expect(parseWebhook(provider, deep, {})).toEqual({
      kind: 'invalid',
      reason: 'JSON nests deeper than 64 levels',
    });
    for (const scalar of ['null', '0', '"x"', 'true', '{}']) {
      expect(parseWebhook(provider, scalar, {}).kind).not.toBe('events');
    }
  });

  it('counts brackets inside strings as text, not nesting', () => {
    const body = JSON.stringify([
      { email: 'a@x.example', event: 'open', timestamp: 1, sg_event_id: `${'['.repeat(500)}"\\` },
    ]);
    expect(parseWebhook('sendgrid', body, {}).kind).toBe('events');
  });

  it('an unknown provider is invalid, not an exception', () => {
    expect(parseWebhook('smtp' as WebhookProvider, '{}', {})).toEqual({
      kind: 'invalid',
      reason: 'unknown provider "smtp"',
    });
  });

  it('a "__proto__" key cannot reach any prototype', () => {
    const result = parseWebhook(
      'sendgrid',
      '[{"email":"a@x.example","event":"open","timestamp":1,"__proto__":{"polluted":"yes"}}]',
      {},
    );
    expect(result).toMatchObject({ kind: 'events' });
    if (result.kind !== 'events') throw new Error('unreachable');
    const args = result.events[0].customArgs;
    expect(Object.getPrototypeOf(args)).toBe(Object.prototype);
    expect((args as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
