/*
 * Every documented payload in ../shared/provider-payloads, read exactly as its README says, and
 * every signature verdict the README gives ("Sig" column).
 */
import { generateKeyPairSync } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { MailEventType } from '@edm/domain';
import { verifyEngagelabSignature } from './engagelab.signature';
import { verifyMailgunSignature } from './mailgun.signature';
import { parseWebhook } from './parse-webhook';
import type { ParsedMailEvent, ParseWebhookResult, WebhookProvider } from './parsed-mail-event';
import { verifyPostmarkBasicAuth } from './postmark.basic-auth';
import type { WebhookRequest } from './signature-check';
import { verifySendgridSignature } from './sendgrid.signature';

const REPO_ROOT = path.resolve(__dirname, '../../../..');
const FIXTURE_DIR = path.resolve(REPO_ROOT, '../shared/provider-payloads');

interface Fixture {
  headers: Record<string, string>;
  /** The body exactly as written in the file (big integers and whitespace intact). */
  rawBody: string;
  public_key?: string;
  webhook_signing_key?: string;
}

/** End index (exclusive) of the JSON value starting at `start`. */
const jsonValueEnd = (text: string, start: number): number => {
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
      if (depth === 0) return i + 1;
    } else if (ch === '{' || ch === '[') depth++;
    else if (ch === '}' || ch === ']') {
      if (--depth === 0) return i + 1;
    } else if (depth === 0 && /[,\s]/.test(ch)) return i;
  }
  return text.length;
};

/** Source text of the top-level member `key`, because JSON.parse would round 64-bit ids. */
const topLevelMemberSource = (text: string, key: string): string => {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      const end = jsonValueEnd(text, i);
      const colon = /^\s*:\s*/.exec(text.slice(end));
      if (depth === 1 && colon !== null && JSON.parse(text.slice(i, end)) === key) {
        const start = end + colon[0].length;
        return text.slice(start, jsonValueEnd(text, start));
      }
      i = end - 1;
    } else if (ch === '{' || ch === '[') depth++;
    else if (ch === '}' || ch === ']') depth--;
  }
  throw new Error(`no top-level ${key}`);
};

const loadFixture = (file: string): Fixture => {
  const text = readFileSync(path.join(FIXTURE_DIR, file), 'utf8');
  const parsed = JSON.parse(text) as Omit<Fixture, 'rawBody'> & { body: unknown };
  return {
    ...parsed,
    rawBody: typeof parsed.body === 'string' ? parsed.body : topLevelMemberSource(text, 'body'),
  };
};

const parseFixture = (provider: WebhookProvider, file: string): ParseWebhookResult => {
  const fixture = loadFixture(file);
  return parseWebhook(provider, fixture.rawBody, fixture.headers);
};

const eventsOf = (result: ParseWebhookResult): ParsedMailEvent[] => {
  if (result.kind !== 'events') throw new Error(`expected events, got ${JSON.stringify(result)}`);
  expect(result.rejected).toEqual([]);
  return result.events;
};

const onlyEvent = (provider: WebhookProvider, file: string): ParsedMailEvent => {
  const events = eventsOf(parseFixture(provider, file));
  expect(events).toHaveLength(1);
  return events[0];
};

const request = (fixture: Fixture, now: Date): WebhookRequest => ({
  rawBody: fixture.rawBody,
  headers: fixture.headers,
  now,
});

/** Fixture files this suite asserts; the last test fails when a new file appears unasserted. */
const covered = new Set<string>();
const fixtureFile = (file: string): string => {
  covered.add(file);
  return file;
};

describe('EngageLab fixtures', () => {
  it('engagelab-target.json is an accepted event with the per-recipient email id', () => {
    const event = onlyEvent('engagelab', fixtureFile('engagelab-target.json'));
    expect(event).toMatchObject({
      provider: 'engagelab',
      rawType: 'target',
      type: 'accepted',
      recipient: '12345@hotmail.com',
      providerMessageId: '1676615711309_104117_18546_8821.sc-10_43_7_16-inbound',
      customArgs: {},
      suppression: false,
    });
    expect(event.messageIdCandidates).toEqual([
      '1676615711309_104117_18546_8821.sc-10_43_7_16-inbound0$12345@hotmail.com',
      '1676615711309_104117_18546_8821.sc-10_43_7_16-inbound',
    ]);
    expect(event.occurredAt.getTime()).toBe(1676615711325);
    expect(event.dedupeKey).toMatch(/^engagelab:sha256:[0-9a-f]{64}$/);
    expect(event.trackingId).toBeUndefined();
  });

  it('engagelab-target.json signature headers are unverifiable under every scheme', () => {
    const fixture = loadFixture('engagelab-target.json');
    for (const scheme of ['hmac-sha256', 'md5', 'any'] as const) {
      const check = verifyEngagelabSignature(request(fixture, new Date()), {
        scheme,
        appKey: 'any-app-key',
        appSecret: 'any-secret',
      });
      expect(check.ok).toBe(false);
    }
  });

  it('engagelab-send-request.json is a client request, not an event', () => {
    expect(parseFixture('engagelab', fixtureFile('engagelab-send-request.json')).kind).toBe('invalid');
  });

  it('engagelab-webhooks-list-response.json is an API response, not an event', () => {
    expect(parseFixture('engagelab', fixtureFile('engagelab-webhooks-list-response.json')).kind).toBe(
      'invalid',
    );
  });
});

describe('SendGrid fixtures', () => {
  const SAME_ID = '14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0';

  it('sendgrid-batch.json is 11 events, group_resubscribe without a type, none collapsed', () => {
    const events = eventsOf(parseFixture('sendgrid', fixtureFile('sendgrid-batch.json')));
    expect(events.map((e) => [e.rawType, e.type])).toEqual([
      ['processed', 'accepted'],
      ['deferred', 'deferred'],
      ['delivered', 'delivered'],
      ['open', 'open'],
      ['click', 'click'],
      ['bounce', 'hard_bounce'],
      ['dropped', 'hard_bounce'],
      ['spamreport', 'complaint'],
      ['unsubscribe', 'unsubscribe'],
      ['group_unsubscribe', 'unsubscribe'],
      ['group_resubscribe', null],
    ]);
    for (const event of events) {
      expect(event.recipient).toBe('example@test.com');
      expect(event.messageIdCandidates).toContain('sg_message_id');
      // category is a tag, not a custom arg.
      expect(event.customArgs).toEqual({});
    }
    expect(new Set(events.map((e) => e.dedupeKey)).size).toBe(11);
  });

  it.each<[string, MailEventType, Partial<ParsedMailEvent>]>([
    ['sendgrid-delivered.json', 'delivered', {}],
    ['sendgrid-deferred.json', 'deferred', { reason: '400 try again later' }],
    ['sendgrid-bounce.json', 'hard_bounce', { reason: '500 unknown recipient', suppression: false }],
    ['sendgrid-blocked.json', 'soft_bounce', { reason: '500 unknown recipient', suppression: false }],
    ['sendgrid-dropped.json', 'hard_bounce', { reason: 'Bounced Address', suppression: true }],
    ['sendgrid-open.json', 'open', {}],
    ['sendgrid-click.json', 'click', { url: 'http://www.sendgrid.com/' }],
    ['sendgrid-spamreport.json', 'complaint', {}],
    ['sendgrid-unsubscribe.json', 'unsubscribe', {}],
  ])('%s is %s for example@test.com', (file, type, extra) => {
    const event = onlyEvent('sendgrid', fixtureFile(file));
    expect(event).toMatchObject({ type, recipient: 'example@test.com', customArgs: {}, ...extra });
    expect(event.messageIdCandidates).toContain(SAME_ID);
    expect(event.providerMessageId).toBe('14c5d75ce93');
  });

  it('sendgrid-processed.json keeps the full id, its prefixes and smtp-id; pool is not a custom arg', () => {
    const event = onlyEvent('sendgrid', fixtureFile('sendgrid-processed.json'));
    expect(event).toMatchObject({
      type: 'accepted',
      recipient: 'example@test.com',
      providerEventId: 'rbtnWrG1DVDGGGFHFyun0A==',
      headerMessageId: '14c5d75ce93.dfd.64b469@ismtpd-555',
      customArgs: {},
    });
    expect(event.messageIdCandidates).toEqual([
      '14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.000000000000000000000',
      '14c5d75ce93.dfd.64b469',
      '14c5d75ce93',
    ]);
    expect(event.occurredAt.toISOString()).toBe('2017-12-15T00:59:29.000Z');
  });

  it('sendgrid-click-unique-args.json carries top-level custom args', () => {
    const event = onlyEvent('sendgrid', fixtureFile('sendgrid-click-unique-args.json'));
    expect(event).toMatchObject({
      type: 'click',
      recipient: 'john.doe@sendgrid.com',
      providerMessageId: 'sendgrid_internal_message_id',
      url: 'https://sendgrid.com',
      customArgs: { userid: '1123', template: 'welcome' },
    });
  });

  it('sendgrid-click-detailed.json: only unique_arg_key is custom (not categories, url_offset, newsletter)', () => {
    const event = onlyEvent('sendgrid', fixtureFile('sendgrid-click-detailed.json'));
    expect(event).toMatchObject({ type: 'click', recipient: 'email@example.com' });
    expect(event.messageIdCandidates).toContain('sendgrid_internal_message_id');
    expect(event.customArgs).toEqual({ unique_arg_key: 'unique_arg_value' });
  });

  describe('sendgrid-signed-dropped.json', () => {
    const file = fixtureFile('sendgrid-signed-dropped.json');
    const fixture = loadFixture(file);
    const now = new Date(1600112502_000);
    const key = { publicKey: fixture.public_key ?? '' };

    it('is a suppressed hard bounce for hello@world.com', () => {
      const event = onlyEvent('sendgrid', file);
      expect(event).toMatchObject({
        type: 'hard_bounce',
        recipient: 'hello@world.com',
        providerMessageId: 'LRzXl_NHStOGhQ4kofSm_A',
        headerMessageId: 'LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net',
        reason: 'Bounced Address',
        suppression: true,
      });
      expect(event.messageIdCandidates).toEqual([
        'LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0',
        'LRzXl_NHStOGhQ4kofSm_A',
      ]);
    });

    it('signature is VALID', () => {
      expect(verifySendgridSignature(request(fixture, now), key)).toEqual({ ok: true });
    });

    it('signature is INVALID when the trailing CRLF, a body byte, the timestamp or the key changes', () => {
      const mutations: Array<[WebhookRequest, { publicKey: string }]> = [
        [{ ...request(fixture, now), rawBody: fixture.rawBody.replace(/\r\n$/, '') }, key],
        [
          {
            ...request(fixture, now),
            rawBody: fixture.rawBody.replace('hello@world.com', 'hellO@world.com'),
          },
          key,
        ],
        [{ ...request(fixture, now), rawBody: JSON.stringify(JSON.parse(fixture.rawBody)) }, key],
        [
          {
            ...request(fixture, now),
            headers: { ...fixture.headers, 'X-Twilio-Email-Event-Webhook-Timestamp': '1600112503' },
          },
          key,
        ],
        [
          request(fixture, now),
          {
            publicKey: generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
              .publicKey.export({ format: 'der', type: 'spki' })
              .toString('base64'),
          },
        ],
      ];
      for (const [mutated, options] of mutations) {
        expect(verifySendgridSignature(mutated, options).ok).toBe(false);
      }
    });
  });

  describe('sendgrid-signed-processed-bounce.json', () => {
    const file = fixtureFile('sendgrid-signed-processed-bounce.json');
    const fixture = loadFixture(file);

    it('is processed → accepted then blocked → soft_bounce for invalid@gmail.com', () => {
      const events = eventsOf(parseFixture('sendgrid', file));
      expect(events.map((e) => e.type)).toEqual(['accepted', 'soft_bounce']);
      for (const event of events) {
        expect(event.recipient).toBe('invalid@gmail.com');
        expect(event.messageIdCandidates[0]).toBe(
          'qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0',
        );
        expect(event.providerMessageId).toBe('qNwBLgPQQjW6DJvKQwSAbw');
        expect(event.customArgs).toEqual({});
      }
      expect(events[1].suppression).toBe(false);
    });

    it('signature is VALID, and INVALID once the CRLF between events is gone', () => {
      const key = { publicKey: fixture.public_key ?? '' };
      const now = new Date(1619651159_000);
      expect(verifySendgridSignature(request(fixture, now), key)).toEqual({ ok: true });
      const joined = { ...request(fixture, now), rawBody: fixture.rawBody.replace('\r\n', '') };
      expect(verifySendgridSignature(joined, key).ok).toBe(false);
    });
  });
});

describe('Mailgun fixtures', () => {
  const unsigned: Array<[string, MailEventType, string, string, Partial<ParsedMailEvent>]> = [
    [
      'mailgun-accepted.json',
      'accepted',
      'recipient@sample.mailgun.com',
      '20260203192638.000be97f99f8cea1@sample.mailgun.com',
      {},
    ],
    [
      'mailgun-delivered.json',
      'delivered',
      'recipient@sample.mailgun.com',
      '20260203192030.53383e583ab41f62@sample.mailgun.com',
      {},
    ],
    [
      'mailgun-opened.json',
      'open',
      'recipient@sample.mailgun.com',
      '20260205213049.8e3a7bf607f78309@sample.mailgun.com',
      {},
    ],
    [
      'mailgun-clicked.json',
      'click',
      'recipient@sample.mailgun.com',
      '20260205213049.8e3a7bf607f78309@sample.mailgun.com',
      { url: 'https://sample.mailgun.com' },
    ],
    [
      'mailgun-failed-permanent.json',
      'hard_bounce',
      'badrecipient@sample.mailgun.com',
      '20260212174255.58bbb7ce85a423e5@mailgun.com',
      { suppression: false },
    ],
    [
      'mailgun-failed-temporary.json',
      'soft_bounce',
      'tempfailrecipient@sample.mailgun.com',
      '20260212180106.5c8f35804ae3fd54@sample.mailgun.com',
      { suppression: false },
    ],
    [
      'mailgun-unsubscribed.json',
      'unsubscribe',
      'recipient@sample.mailgun.com',
      '20260205213049.8e3a7bf607f78309@sample.mailgun.com',
      {},
    ],
    [
      'mailgun-complained.json',
      'complaint',
      'recipient@sample.mailgun.com',
      '20260212182531.0d5ed3254c319957@sample.mailgun.com',
      {},
    ],
  ];

  it.each(unsigned)(
    '%s is %s for %s, message %s, user-variables [] → {}',
    (file, type, recipient, messageId, extra) => {
      const event = onlyEvent('mailgun', fixtureFile(file));
      expect(event).toMatchObject({
        provider: 'mailgun',
        type,
        recipient,
        providerMessageId: messageId,
        headerMessageId: messageId,
        messageIdCandidates: [messageId],
        customArgs: {},
        ...extra,
      });
      expect(event.dedupeKey).toBe(`mailgun:id:${encodeURIComponent(event.providerEventId ?? '')}`);
    },
  );

  it.each(unsigned.map(([file]) => file))('%s signature FAILS (its signing key is unpublished)', (file) => {
    const fixture = loadFixture(file);
    const now = new Date();
    for (const signingKey of ['TEST_WEBHOOK_SIGNING_KEY', 'key-3ax6xnjp29jd6fds4gc373sgvjxteol0']) {
      expect(verifyMailgunSignature(request(fixture, now), { signingKey, maxSkewMs: null }).ok).toBe(false);
    }
  });

  it('mailgun-failed-permanent.json names the SMTP failure as its reason', () => {
    expect(onlyEvent('mailgun', 'mailgun-failed-permanent.json').reason).toMatch(/^5\.5\.0 Requested action/);
  });

  it('mailgun-delivered-signed.json is delivered, user-variables {} and a VALID signature', () => {
    const file = fixtureFile('mailgun-delivered-signed.json');
    const event = onlyEvent('mailgun', file);
    expect(event).toMatchObject({
      type: 'delivered',
      recipient: 'recipient@example.com',
      providerMessageId: '20180812211713.1.DF5966851B4BAA99@example.org',
      providerEventId: 'hTWCTD81RtiDN-...',
      customArgs: {},
    });
    const fixture = loadFixture(file);
    const options = { signingKey: fixture.webhook_signing_key ?? '' };
    expect(verifyMailgunSignature(request(fixture, new Date(1534108637_000)), options)).toEqual({ ok: true });
    // Years old: the default 5-minute window rejects it today.
    expect(verifyMailgunSignature(request(fixture, new Date('2026-01-01T00:00:00Z')), options).ok).toBe(
      false,
    );
  });

  it('mailgun-opened-user-variables-signed.json is an open with its user-variables and a VALID signature', () => {
    const file = fixtureFile('mailgun-opened-user-variables-signed.json');
    const event = onlyEvent('mailgun', file);
    expect(event).toMatchObject({
      type: 'open',
      recipient: 'recipient@example.com',
      providerMessageId: '20180812213139.1.BC6694A917BB7E6A@example.org',
      customArgs: { cohort: '2018-08-B', user_id: '123456' },
    });
    // No Mailgun event id in this payload, so the key is a body hash.
    expect(event.dedupeKey).toMatch(/^mailgun:sha256:/);
    const fixture = loadFixture(file);
    const options = { signingKey: fixture.webhook_signing_key ?? '' };
    expect(verifyMailgunSignature(request(fixture, new Date(1534109600_000)), options)).toEqual({ ok: true });
    const tampered = {
      ...request(fixture, new Date(1534109600_000)),
      rawBody: fixture.rawBody.replace('1234567890abcdef', '1234567890abcdeF'),
    };
    expect(verifyMailgunSignature(tampered, options).ok).toBe(false);
  });
});

describe('SES via SNS fixtures', () => {
  const MESSAGE_ID = 'EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000';
  const CUSTOM_TAG_VALUES = { myCustomTag1: 'myCustomValue1', myCustomTag2: 'myCustomValue2' };
  const SEND_TAG_VALUES = { myCustomTag1: 'myCustomTagValue1', myCustomTag2: 'myCustomTagValue2' };

  it.each<[string, MailEventType, string, Record<string, string>, Partial<ParsedMailEvent>]>([
    ['ses-sns-send.json', 'accepted', MESSAGE_ID, SEND_TAG_VALUES, {}],
    ['ses-sns-delivery.json', 'delivered', MESSAGE_ID, SEND_TAG_VALUES, {}],
    ['ses-sns-bounce-permanent.json', 'hard_bounce', MESSAGE_ID, {}, { suppression: false }],
    ['ses-sns-complaint.json', 'complaint', MESSAGE_ID, {}, { reason: 'abuse' }],
    ['ses-sns-open.json', 'open', MESSAGE_ID, CUSTOM_TAG_VALUES, {}],
    [
      'ses-sns-click.json',
      'click',
      MESSAGE_ID,
      CUSTOM_TAG_VALUES,
      { url: 'http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html' },
    ],
    ['ses-sns-delivery-delay.json', 'deferred', MESSAGE_ID, {}, {}],
    [
      'ses-sns-subscription.json',
      'unsubscribe',
      'EXAMPLEe4bccb684-777bc8de-afa7-4970-92b0-f515137b1497-000000',
      CUSTOM_TAG_VALUES,
      {},
    ],
  ])('%s is %s for recipient@example.com', (file, type, messageId, customArgs, extra) => {
    const event = onlyEvent('ses', fixtureFile(file));
    expect(event).toMatchObject({
      provider: 'ses',
      type,
      recipient: 'recipient@example.com',
      providerMessageId: messageId,
      messageIdCandidates: [messageId],
      providerEventId: '22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324',
      ...extra,
    });
    expect(event.customArgs).toEqual(customArgs);
  });

  it('ses-sns-bounce-permanent.json gives the SMTP diagnostics as reason', () => {
    expect(onlyEvent('ses', 'ses-sns-bounce-permanent.json').reason).toBe(
      'Permanent/General: 5.1.1: smtp; 550 5.1.1 user unknown',
    );
  });

  it('ses-sns-bounce-notification-format.json bounces jane@example.com only; Message-ID is a different id', () => {
    const event = onlyEvent('ses', fixtureFile('ses-sns-bounce-notification-format.json'));
    expect(event).toMatchObject({
      rawType: 'Bounce',
      type: 'hard_bounce',
      recipient: 'jane@example.com',
      providerMessageId: '00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000',
      headerMessageId: 'custom-message-ID',
      customArgs: {},
    });
  });

  it('ses-sns-subscription-confirmation.json is a subscription to confirm, not an email event', () => {
    const result = parseFixture('ses', fixtureFile('ses-sns-subscription-confirmation.json'));
    expect(result).toMatchObject({
      kind: 'sns-subscription',
      messageType: 'SubscriptionConfirmation',
      topicArn: 'arn:aws:sns:us-west-2:123456789012:MyTopic',
    });
    if (result.kind !== 'sns-subscription') throw new Error('unreachable');
    expect(result.subscribeUrl).toMatch(
      /^https:\/\/sns\.us-west-2\.amazonaws\.com\/\?Action=ConfirmSubscription&/,
    );
  });
  // Their SNS verdict (all FAIL) is asserted in sns.signature.spec.ts, next to the test certificate.
});

describe('Postmark fixtures', () => {
  const METADATA = { a_key: 'a_value', b_key: 'b_value' };

  it.each<[string, MailEventType, string, Partial<ParsedMailEvent>]>([
    ['postmark-delivery.json', 'delivered', '883953f4-6105-42a2-a16a-77a8eac79483', {}],
    ['postmark-open.json', 'open', '883953f4-6105-42a2-a16a-77a8eac79483', {}],
    ['postmark-click.json', 'click', '00000000-0000-0000-0000-000000000000', { url: 'https://example.com' }],
    [
      'postmark-spam-complaint.json',
      'complaint',
      '00000000-0000-0000-0000-000000000000',
      { providerEventId: '42', dedupeKey: 'postmark:id:SpamComplaint:42' },
    ],
  ])('%s is %s for john@example.com', (file, type, messageId, extra) => {
    const event = onlyEvent('postmark', fixtureFile(file));
    expect(event).toMatchObject({
      type,
      recipient: 'john@example.com',
      providerMessageId: messageId,
      customArgs: METADATA,
      suppression: false,
      ...extra,
    });
  });

  it('postmark-bounce-hard.json is a hard bounce whose 64-bit ID survives parsing', () => {
    const event = onlyEvent('postmark', fixtureFile('postmark-bounce-hard.json'));
    expect(event).toMatchObject({
      rawType: 'Bounce',
      type: 'hard_bounce',
      recipient: 'john@example.com',
      providerMessageId: '883953f4-6105-42a2-a16a-77a8eac79483',
      providerEventId: '4323372036854775807',
      dedupeKey: 'postmark:id:Bounce:4323372036854775807',
      customArgs: METADATA,
    });
  });

  it('postmark-subscription-change.json is a hard-bounce suppression, not an unsubscribe', () => {
    const event = onlyEvent('postmark', fixtureFile('postmark-subscription-change.json'));
    expect(event).toMatchObject({
      rawType: 'SubscriptionChange',
      type: 'hard_bounce',
      suppression: true,
      recipient: 'bounced-address@example.com',
      providerMessageId: '883953f4-6105-42a2-a16a-77a8eac79483',
      customArgs: { example: 'value', example_2: 'value' },
      reason: 'HardBounce',
    });
  });

  it('Postmark fixtures carry no HMAC; they are authenticated by basic auth only', () => {
    const fixture = loadFixture('postmark-delivery.json');
    const credentials = { username: 'postmark', password: 's3cret' };
    expect(verifyPostmarkBasicAuth(request(fixture, new Date()), credentials).ok).toBe(false);
    const authorised = {
      headers: {
        ...fixture.headers,
        Authorization: `Basic ${Buffer.from('postmark:s3cret').toString('base64')}`,
      },
    };
    expect(verifyPostmarkBasicAuth(authorised, credentials)).toEqual({ ok: true });
  });
});

it('every fixture file in ../shared/provider-payloads is asserted above', () => {
  const files = readdirSync(FIXTURE_DIR).filter((f) => f.endsWith('.json'));
  expect(files.length).toBeGreaterThan(40);
  expect(files.filter((f) => !covered.has(f))).toEqual([]);
});
