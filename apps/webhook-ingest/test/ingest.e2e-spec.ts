import { createHmac } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { ParsedMail, simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { Client } from 'pg';
import { progressSubTask, isMailEventType } from '@edm/domain';
import { SubTaskStatus } from '@edm/events';
import { parseWebhook, WebhookProvider } from '@edm/providers';
import {
  createTestEnvironment,
  eventually,
  ServiceProcess,
  startService,
  TestEnvironment,
} from '@edm/testing';

const FIXTURES = resolve(__dirname, '../../../../shared/provider-payloads');

interface Fixture {
  file: string;
  provider: WebhookProvider;
  headers: Record<string, string>;
  raw: string;
  publicKey?: string;
}

const fixtures: Fixture[] = readdirSync(FIXTURES)
  .filter(
    (f) =>
      f.endsWith('.json') &&
      !['engagelab-send-request.json', 'engagelab-webhooks-list-response.json'].includes(f),
  )
  .map((file) => {
    const json = JSON.parse(readFileSync(join(FIXTURES, file), 'utf8')) as {
      headers?: Record<string, string>;
      body: unknown;
      public_key?: string;
    };
    const provider = file.split('-')[0] as WebhookProvider;
    return {
      file,
      provider,
      headers: json.headers ?? {},
      raw: typeof json.body === 'string' ? json.body : JSON.stringify(json.body),
      publicKey: json.public_key,
    };
  });

const CREDENTIALS: Record<string, unknown> = {
  engagelab: { apiUser: 'u', apiKey: 'k' },
  sendgrid: { apiKey: 'SG.key' },
  mailgun: { apiKey: 'key', domain: 'mg.example.com' },
  ses: { region: 'us-east-1', accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'secret' },
  postmark: { serverToken: 'token' },
  sandbox: {},
};

/** webhook-ingest as a process with the API and a dispatcher whose sandbox calls it back. */
describe('webhook-ingest (e2e)', () => {
  let env: TestEnvironment;
  let api: ServiceProcess;
  let ingest: ServiceProcess;
  let dispatcher: ServiceProcess;
  let db: Client;
  let key: string;

  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${api.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const json = (await response.json()) as Record<string, unknown>;
    if (response.status >= 300)
      throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
    return json;
  };
  // Real providers' services point at a closed local port: nothing here may leave the machine.
  const service = async (
    provider: string,
    options: Record<string, unknown> = {},
    pace: Record<string, number> = { intervalMs: 0 },
  ) =>
    (
      await call('POST', '/api/v1/services', {
        name: `${provider}-${Math.random()}`,
        provider,
        from: { email: 'news@example.com' },
        pace,
        credentials: CREDENTIALS[provider],
        options: provider === 'sandbox' ? options : { baseUrl: 'http://127.0.0.1:9', ...options },
      })
    ).id as string;
  const post = (
    path: string,
    raw: string,
    headers: Record<string, string> = { 'content-type': 'application/json' },
  ) => fetch(`${ingest.url}${path}`, { method: 'POST', headers, body: raw });
  const one = async <T>(sql: string, params: unknown[] = []): Promise<T> =>
    (await db.query(sql, params)).rows[0] as T;

  beforeAll(async () => {
    env = await createTestEnvironment('ingest');
    api = await startService('api', { ...env.env, RELAY_POLL_INTERVAL_MS: '200' });
    ingest = await startService('webhook-ingest', {
      ...env.env,
      INGEST_POLL_INTERVAL_MS: '200',
      HTTP_BODY_LIMIT_BYTES: '1048576',
    });
    dispatcher = await startService('dispatcher', {
      ...env.env,
      TRACKING_BASE_URL: ingest.url,
      DISPATCH_POLL_INTERVAL_MS: '250',
      DISPATCH_REAPER_INTERVAL_MS: '500',
    });
    key = readFileSync(join(env.home, 'admin-key'), 'utf8').trim();
    db = new Client({ connectionString: env.databaseUrl });
    await db.connect();
  }, 60_000);

  afterAll(async () => {
    await db?.end();
    const codes = await Promise.all([api, ingest, dispatcher].map((p) => p?.stop()));
    expect(codes).toEqual([0, 0, 0]);
    await env?.dispose();
  }, 60_000);

  it('stores every documented payload raw before answering and parses it as documented', async () => {
    const services: Record<string, string> = {};
    for (const provider of ['engagelab', 'sendgrid', 'mailgun', 'postmark', 'ses'])
      services[provider] = await service(provider);
    // A service that takes only its own SNS topic refuses the documented topics before any fetch.
    const sesOwnTopic = await service('ses', {
      webhookTopicArns: ['arn:aws:sns:eu-west-1:123456789012:our-own-ses-events'],
    });
    const storedBefore = await one<{ n: number }>(
      `SELECT count(*)::int AS n FROM event_logs WHERE source = 'ses'`,
    );
    for (const fixture of fixtures) {
      const headers = { 'content-type': 'application/json', ...fixture.headers };
      const path =
        fixture.provider === 'engagelab'
          ? '/api/webhooks/mail-event'
          : `/api/webhooks/${fixture.provider}/${services[fixture.provider]}`;
      const response = await post(path, fixture.raw, headers);
      if (fixture.provider === 'ses') {
        // SNS signatures are always checked, and AWS's certificates cannot be fetched here: each
        // message is answered 503, which SNS retries, and is not stored. Only one refused before
        // the fetch (none of the documented ones) would be a 401.
        expect({ file: fixture.file, status: response.status }).toEqual({ file: fixture.file, status: 503 });
        const other = await post(`/api/webhooks/ses/${sesOwnTopic}`, fixture.raw, headers);
        expect({ file: fixture.file, status: other.status }).toEqual({ file: fixture.file, status: 401 });
        continue;
      }
      expect({ file: fixture.file, status: response.status }).toEqual({ file: fixture.file, status: 200 });
      const { id } = (await response.json()) as { id: string };
      const stored = await one<{ raw_body: string; verified: boolean }>(
        `SELECT raw_body, verified FROM event_logs WHERE id = $1`,
        [id],
      );
      expect(stored.raw_body).toBe(fixture.raw);
      const expected = parseWebhook(fixture.provider, fixture.raw, headers);
      const count = expected.kind === 'events' ? new Set(expected.events.map((e) => e.dedupeKey)).size : 0;
      await eventually(
        `${fixture.file} processed`,
        async () =>
          (await one<{ status: string }>(`SELECT status FROM event_logs WHERE id = $1`, [id])).status !==
          'received',
      );
      const parsed = await one<{ status: string; events: number }>(
        `SELECT status, events FROM event_logs WHERE id = $1`,
        [id],
      );
      expect({ file: fixture.file, status: parsed.status }).toEqual({
        file: fixture.file,
        status: expected.kind === 'invalid' ? 'invalid' : 'processed',
      });
      const rows = await one<{ n: number }>(
        `SELECT count(*)::int AS n FROM mail_events WHERE event_log_id = $1`,
        [id],
      );
      expect(rows.n).toBeLessThanOrEqual(count);
    }
    expect(
      await one<{ n: number }>(`SELECT count(*)::int AS n FROM event_logs WHERE source = 'ses'`),
    ).toEqual(storedBefore);
    const types = await db.query(
      `SELECT DISTINCT type FROM mail_events WHERE type IS NOT NULL ORDER BY type`,
    );
    expect(types.rows.map((r) => r.type)).toEqual(
      expect.arrayContaining([
        'accepted',
        'click',
        'complaint',
        'deferred',
        'delivered',
        'hard_bounce',
        'open',
        'soft_bounce',
        'unsubscribe',
      ]),
    );
  });

  it('verifies signatures when the service has a secret: valid is stored, invalid is 401 and not stored', async () => {
    const signed = fixtures.find((f) => f.file === 'sendgrid-signed-dropped.json')!;
    const sendgrid = await service('sendgrid', { webhookPublicKey: signed.publicKey });
    const before = await one<{ n: number }>(`SELECT count(*)::int AS n FROM event_logs`);
    const signedAnswer = await post(`/api/webhooks/sendgrid/${sendgrid}`, signed.raw, {
      'content-type': 'application/json',
      ...signed.headers,
    });
    expect(signedAnswer.status).toBe(200);
    const tampered = signed.raw.replace('hello@world.com', 'hello@world.co');
    expect(
      (
        await post(`/api/webhooks/sendgrid/${sendgrid}`, tampered, {
          'content-type': 'application/json',
          ...signed.headers,
        })
      ).status,
    ).toBe(401);
    expect((await post(`/api/webhooks/sendgrid/${sendgrid}`, signed.raw)).status).toBe(401);
    expect((await one<{ n: number }>(`SELECT count(*)::int AS n FROM event_logs`)).n).toBe(before.n + 1);

    const postmark = await service('postmark', { webhookUsername: 'hook', webhookPassword: 's3cret' });
    const body = fixtures.find((f) => f.file === 'postmark-delivery.json')!.raw;
    expect((await post(`/api/webhooks/postmark/${postmark}`, body)).status).toBe(401);
    const auth = `Basic ${Buffer.from('hook:s3cret').toString('base64')}`;
    const ok = await post(`/api/webhooks/postmark/${postmark}`, body, {
      'content-type': 'application/json',
      authorization: auth,
    });
    expect(ok.status).toBe(200);
    const { id } = (await ok.json()) as { id: string };
    const stored = await one<{ headers: Record<string, string>; verified: boolean }>(
      `SELECT headers, verified FROM event_logs WHERE id = $1`,
      [id],
    );
    expect(stored.verified).toBe(true);
    expect(stored.headers.authorization).toBeUndefined();

    // The generic EngageLab path names no service: the one whose secret verifies the request answers for it.
    const engagelab = fixtures.find((f) => f.file === 'engagelab-target.json')!.raw;
    await service('engagelab', { webhookAppKey: 'first-app-key', webhookSignatureScheme: 'hmac-sha256' });
    const second = await service('engagelab', {
      webhookAppKey: 'second-app-key',
      webhookSignatureScheme: 'hmac-sha256',
    });
    // Webhook secrets are sealed at rest: neither the services table nor any event holds them.
    for (const secret of ['second-app-key', 's3cret'])
      expect(
        await one<{ n: number }>(
          `SELECT (SELECT count(*) FROM events WHERE data::text LIKE $1) + (SELECT count(*) FROM sending_services WHERE options::text LIKE $1) AS n`,
          [`%${secret}%`],
        ),
      ).toEqual({ n: '0' });
    const timestamp = String(Date.now());
    const signedWith = (key: string) => ({
      'content-type': 'application/json',
      'X-WebHook-Timestamp': timestamp,
      'X-WebHook-Signature': createHmac('sha256', key).update(timestamp).digest('hex'),
    });
    // Services are cached for about 5 s: new secrets apply within that. Waits until a request
    // signed with `key` is stored, verified, for `service`.
    const genericStoredFor = (what: string, key: string, service: string | null) =>
      eventually(
        what,
        async () => {
          const generic = await post('/api/webhooks/mail-event', engagelab, signedWith(key));
          expect(generic.status).toBe(200);
          const { id: genericId } = (await generic.json()) as { id: string };
          const row = await one<{ service_id: string | null; verified: boolean }>(
            `SELECT service_id, verified FROM event_logs WHERE id = $1`,
            [genericId],
          );
          return row.service_id === service && row.verified;
        },
        10_000,
        500,
      );
    await genericStoredFor(
      'the generic path attributes a signed request to its service',
      'second-app-key',
      second,
    );
    expect((await post('/api/webhooks/mail-event', engagelab, signedWith('nobody-s-key'))).status).toBe(401);
    expect((await post('/api/webhooks/mail-event', engagelab)).status).toBe(401);

    // Another tenant's service with the same secret: either tenant may have sent the mail, so
    // neither answers for it; stored verified for no service, it is matched in any account.
    const tenant = (await call('POST', '/api/v1/accounts', { name: 'same engagelab app' })) as {
      apiKey: string;
    };
    const created = await fetch(`${api.url}/api/v1/services`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tenant.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'engagelab of another tenant',
        provider: 'engagelab',
        from: { email: 'news@example.com' },
        pace: { intervalMs: 0 },
        credentials: CREDENTIALS.engagelab,
        options: {
          baseUrl: 'http://127.0.0.1:9',
          webhookAppKey: 'second-app-key',
          webhookSignatureScheme: 'hmac-sha256',
        },
      }),
    });
    expect(created.status).toBe(201);
    await genericStoredFor(
      'the generic path attributes a request two tenants could have sent to neither',
      'second-app-key',
      null,
    );
  });

  it('sends 1,000 mails whose delivered, open, click and bounce callbacks flow back: every sub-task and contact ends right', async () => {
    const sandbox = await service('sandbox', {
      latencyMs: 0,
      callbackDelayMs: 20,
      callbacks: {
        delivered: 1,
        open: 0.5,
        click: 0.25,
        hard_bounce: 0.05,
        complaint: 0.02,
        unsubscribe: 0.02,
      },
    });
    for (let i = 0; i < 1_000; i += 500) {
      await call('POST', '/api/v1/contacts', {
        contacts: Array.from({ length: 500 }, (_, j) => ({
          email: `flow-${i + j}@example.com`,
          tags: ['flow'],
        })),
      });
    }
    const task = (
      await call('POST', '/api/v1/tasks', {
        name: 'flow',
        subject: 's',
        text: 't',
        recipients: { tags: ['flow'] },
        serviceIds: [sandbox],
      })
    ).id as string;
    await eventually(
      'task completed',
      async () => (await call('GET', `/api/v1/tasks/${task}`)).status === 'completed',
      90_000,
      250,
    );
    // Quiet: no callback arrived for a second and everything stored is processed and matched.
    let last = -1;
    await eventually(
      'callbacks settled',
      async () => {
        const now = await one<{ logs: number; open: number }>(
          `SELECT (SELECT count(*)::int FROM event_logs WHERE source = 'sandbox') AS logs,
                  (SELECT count(*)::int FROM event_logs WHERE status = 'received') + (SELECT count(*)::int FROM mail_events WHERE match_status = 'pending' AND provider = 'sandbox') AS open`,
        );
        const settled = now.logs === last && now.open === 0;
        last = now.logs;
        return settled;
      },
      120_000,
      1_000,
    );
    const rows = (
      await db.query(
        `SELECT s.id, s.status, c.status AS contact_status, array_agg(m.type ORDER BY m.received_at) FILTER (WHERE m.type IS NOT NULL) AS types
           FROM sub_tasks s JOIN contacts c ON c.id = s.contact_id LEFT JOIN mail_events m ON m.sub_task_id = s.id
          WHERE s.task_id = $1 GROUP BY s.id, s.status, c.status`,
        [task],
      )
    ).rows as { id: string; status: SubTaskStatus; contact_status: string; types: string[] | null }[];
    expect(rows).toHaveLength(1_000);
    const suppressing: Record<string, string> = {
      bounced: 'bounced',
      complained: 'complained',
      unsubscribed: 'unsubscribed',
    };
    for (const row of rows) {
      let expected: SubTaskStatus = 'sent';
      for (const type of row.types ?? [])
        if (isMailEventType(type)) expected = progressSubTask(expected, type) ?? expected;
      expect({ id: row.id, status: row.status }).toEqual({ id: row.id, status: expected });
      expect({ id: row.id, contact: row.contact_status }).toEqual({
        id: row.id,
        contact: suppressing[expected] ?? 'active',
      });
    }
    const statuses = new Set(rows.map((r) => r.status));
    for (const s of ['delivered', 'opened', 'clicked', 'bounced']) expect(statuses).toContain(s);
    const unmatched = await one<{ n: number }>(
      `SELECT count(*)::int AS n FROM mail_events WHERE provider = 'sandbox' AND match_status <> 'matched'`,
    );
    expect(unmatched.n).toBe(0);
    const logs = await one<{ logs: number; events: number }>(
      `SELECT (SELECT count(*)::int FROM event_logs WHERE source = 'sandbox') AS logs, (SELECT count(*)::int FROM mail_events WHERE provider = 'sandbox') AS events`,
    );
    expect(logs.events).toBe(logs.logs);
    const counts = (await call('GET', `/api/v1/tasks/${task}`)).counts as Record<string, number>;
    expect(counts.sent).toBe(1_000);
    expect(counts.clicked).toBe(rows.filter((r) => r.status === 'clicked').length);

    // GET /api/v1/event-logs: the task's provider events, newest first, page by page; none for another account.
    const seen = new Set<string>();
    let cursor: string | null = null;
    do {
      const page = (await call(
        'GET',
        `/api/v1/event-logs?taskId=${task}&matchStatus=matched&limit=500${cursor ? `&cursor=${cursor}` : ''}`,
      )) as { items: { id: string; taskId: string; matchStrategy: string }[]; nextCursor: string | null };
      for (const item of page.items) {
        expect(item).toMatchObject({ taskId: task, matchStrategy: 'tracking-id' });
        seen.add(item.id);
      }
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen.size).toBe(logs.events);
    const other = (await call('POST', '/api/v1/accounts', { name: 'another tenant' })) as { apiKey: string };
    const foreign = await fetch(`${api.url}/api/v1/event-logs?taskId=${task}`, {
      headers: { authorization: `Bearer ${other.apiKey}` },
    });
    expect(((await foreign.json()) as { items: unknown[] }).items).toEqual([]);
    const invalid = await fetch(`${api.url}/api/v1/event-logs?matchStatus=bogus`, {
      headers: { authorization: `Bearer ${key}` },
    });
    expect(invalid.status).toBe(400);
  }, 240_000);

  it('applies out-of-order, repeated and concurrent events for one sub-task to one final state', async () => {
    const sandbox = await service('sandbox', { latencyMs: 0, callbacks: { delivered: 0 } });
    await call('POST', '/api/v1/contacts', { contacts: [{ email: 'order@example.com', tags: ['order'] }] });
    const task = (
      await call('POST', '/api/v1/tasks', {
        name: 'order',
        subject: 's',
        text: 't',
        recipients: { tags: ['order'] },
        serviceIds: [sandbox],
      })
    ).id as string;
    await eventually(
      'sent',
      async () => (await call('GET', `/api/v1/tasks/${task}`)).status === 'completed',
      30_000,
      100,
    );
    const sub = await one<{ tracking_id: string; email: string }>(
      `SELECT tracking_id, email FROM sub_tasks WHERE task_id = $1`,
      [task],
    );
    const event = (eventId: string, type: string) =>
      JSON.stringify({
        events: [{ eventId, type, trackingId: sub.tracking_id, email: sub.email, timestamp: Date.now() }],
      });
    const answers = await Promise.all([
      post(`/api/webhooks/sandbox/${sandbox}`, event('c1', 'click')),
      post(`/api/webhooks/sandbox/${sandbox}`, event('o1', 'open')),
      post(`/api/webhooks/sandbox/${sandbox}`, event('o1', 'open')),
      post(`/api/webhooks/sandbox/${sandbox}`, event('o1', 'open')),
      post(`/api/webhooks/sandbox/${sandbox}`, event('d1', 'delivered')),
    ]);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    await eventually(
      'applied',
      async () =>
        (
          await one<{ n: number }>(
            `SELECT count(*)::int AS n FROM mail_events m JOIN sub_tasks s ON s.id = m.sub_task_id WHERE s.task_id = $1`,
            [task],
          )
        ).n === 3,
    );
    const counts = (await call('GET', `/api/v1/tasks/${task}`)).counts as Record<string, number>;
    expect(counts).toMatchObject({ total: 1, sent: 1, delivered: 1, opened: 1, clicked: 1 });
    const progressed = await one<{ n: number }>(
      `SELECT count(*)::int AS n FROM events WHERE type = 'SubTaskProgressed' AND data->>'taskId' = $1`,
      [task],
    );
    expect(progressed.n).toBeLessThanOrEqual(3);
    const logs = await one<{ n: number }>(
      `SELECT count(*)::int AS n FROM event_logs WHERE raw_body LIKE $1`,
      [`%${sub.tracking_id}%`],
    );
    expect(logs.n).toBe(5);
  });

  it('unsubscribes in one click (RFC 8058): the hit is stored, the contact suppressed, nothing on GET', async () => {
    const sandbox = await service('sandbox', { latencyMs: 0, callbacks: { delivered: 0 } });
    await call('POST', '/api/v1/contacts', { contacts: [{ email: 'leave@example.com', tags: ['leave'] }] });
    const task = (
      await call('POST', '/api/v1/tasks', {
        name: 'leave',
        subject: 's',
        text: 't',
        recipients: { tags: ['leave'] },
        serviceIds: [sandbox],
      })
    ).id as string;
    await eventually(
      'sent',
      async () => (await call('GET', `/api/v1/tasks/${task}`)).status === 'completed',
      30_000,
      100,
    );
    const sub = await one<{ tracking_id: string }>(`SELECT tracking_id FROM sub_tasks WHERE task_id = $1`, [
      task,
    ]);
    const headers = await one<{ headers: Record<string, string> }>(
      `SELECT headers FROM sandbox_messages WHERE tracking_id = $1`,
      [sub.tracking_id],
    );
    expect(headers.headers['List-Unsubscribe']).toBe(`<${ingest.url}/t/unsubscribe/${sub.tracking_id}>`);
    const page = await fetch(`${ingest.url}/t/unsubscribe/${sub.tracking_id}`);
    expect(page.status).toBe(200);
    expect(
      (await one<{ status: string }>(`SELECT status FROM contacts WHERE email = 'leave@example.com'`)).status,
    ).toBe('active');
    const click = await post(`/t/unsubscribe/${sub.tracking_id}`, 'List-Unsubscribe=One-Click', {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(click.status).toBe(200);
    await eventually(
      'contact unsubscribed',
      async () =>
        (await one<{ status: string }>(`SELECT status FROM contacts WHERE email = 'leave@example.com'`))
          .status === 'unsubscribed',
    );
    expect(
      (await one<{ status: string }>(`SELECT status FROM sub_tasks WHERE task_id = $1`, [task])).status,
    ).toBe('unsubscribed');
    expect((await fetch(`${ingest.url}/t/unsubscribe/not-a-tracking-id`, { method: 'POST' })).status).toBe(
      404,
    );
  });

  it('tracks opens and clicks of SMTP mail with our pixel and signed links, and never redirects elsewhere', async () => {
    const received: ParsedMail[] = [];
    const smtp = new SMTPServer({
      secure: false,
      disabledCommands: ['STARTTLS', 'AUTH'],
      logger: false,
      onData(stream, _session, callback) {
        simpleParser(stream).then((mail) => {
          received.push(mail);
          callback();
        }, callback);
      },
    });
    const port = await new Promise<number>((ok) =>
      smtp.listen(0, '127.0.0.1', () => ok((smtp.server.address() as AddressInfo).port)),
    );
    try {
      const id = (
        await call('POST', '/api/v1/services', {
          name: 'relay',
          provider: 'smtp',
          from: { email: 'news@example.com' },
          pace: { intervalMs: 0 },
          credentials: { host: '127.0.0.1', port, secure: false },
        })
      ).id as string;
      await call('POST', '/api/v1/contacts', {
        contacts: [{ email: 'reader@example.com', name: 'Reader', tags: ['reader'] }],
      });
      const task = (
        await call('POST', '/api/v1/tasks', {
          name: 'smtp',
          subject: 'Hi {{name}}',
          html: '<html><body><p>Hi {{name}}</p><a href="https://shop.example.com/sale?x=1&amp;y=2">Sale</a></body></html>',
          recipients: { tags: ['reader'] },
          serviceIds: [id],
        })
      ).id as string;
      await eventually('mail received', async () => received.length === 1, 30_000, 100);
      const sub = await one<{ tracking_id: string }>(`SELECT tracking_id FROM sub_tasks WHERE task_id = $1`, [
        task,
      ]);
      const html = String(received[0].html);
      expect(received[0].headers.get('x-edm-tracking-id')).toBe(sub.tracking_id);
      const pixel = /<img src="([^"]+)"/.exec(html)![1];
      const link = /href="([^"]+\/t\/click\/[^"]+)"/.exec(html)![1].replace(/&amp;/g, '&');
      expect(pixel).toBe(`${ingest.url}/t/open/${sub.tracking_id}.gif`);

      const opened = await fetch(pixel);
      expect(opened.status).toBe(200);
      expect(opened.headers.get('content-type')).toBe('image/gif');
      const clicked = await fetch(link, { redirect: 'manual' });
      expect(clicked.status).toBe(302);
      expect(clicked.headers.get('location')).toBe('https://shop.example.com/sale?x=1&y=2');
      const forged = link.replace(
        encodeURIComponent('https://shop.example.com/sale?x=1&y=2'),
        encodeURIComponent('https://evil.example.com/'),
      );
      expect((await fetch(forged, { redirect: 'manual' })).status).toBe(404);
      expect(
        (
          await fetch(`${ingest.url}/t/click/${sub.tracking_id}?u=https%3A%2F%2Fevil.example.com%2F`, {
            redirect: 'manual',
          })
        ).status,
      ).toBe(404);
      await eventually(
        'clicked',
        async () =>
          (await one<{ status: string }>(`SELECT status FROM sub_tasks WHERE task_id = $1`, [task]))
            .status === 'clicked',
      );
      const dated = await one<{ d: boolean; o: boolean }>(
        `SELECT delivered_at IS NOT NULL AS d, opened_at IS NOT NULL AS o FROM sub_tasks WHERE task_id = $1`,
        [task],
      );
      expect(dated).toEqual({ d: true, o: true });
    } finally {
      await new Promise<void>((ok) => smtp.close(() => ok()));
    }
  });

  it('answers malformed, huge, hostile and wrong-type requests with 4xx, stays up, and stores every 2xx', async () => {
    const sandbox = await service('sandbox');
    const engagelab = await service('engagelab');
    expect((await post(`/api/webhooks/sandbox/${sandbox}`, 'x'.repeat(2_000_000))).status).toBe(413);
    expect(
      (await post(`/api/webhooks/sandbox/${sandbox}`, '{}', { 'content-type': 'text/html' })).status,
    ).toBe(415);
    expect((await post(`/api/webhooks/sandbox/00000000-0000-7000-8000-000000000000`, '{}')).status).toBe(404);
    expect((await post(`/api/webhooks/sandbox/${engagelab}`, '{}')).status).toBe(404);
    expect((await post(`/api/webhooks/carrier-pigeon/${sandbox}`, '{}')).status).toBe(404);
    expect((await post(`/api/webhooks/sandbox/${sandbox}`, '')).status).toBe(400);

    const accepted: string[] = [];
    const paths = [
      '/api/webhooks/mail-event',
      `/api/webhooks/sandbox/${sandbox}`,
      `/api/webhooks/engagelab/${engagelab}`,
      `/api/webhooks/sendgrid/${sandbox}`,
      "/api/webhooks/sandbox/1' OR '1'='1",
    ];
    let deep = '1';
    for (let i = 0; i < 5_000; i += 1) deep = `{"a":${deep}}`;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...paths),
        fc.oneof(
          fc.string(),
          fc.json(),
          fc.constant(deep),
          fc.constant('{"events":[{"__proto__":{"x":1}}]}'),
          fc.constant('[]'),
          fc.constant('\u0000\uffff'),
        ),
        fc.constantFrom(
          'application/json',
          'text/plain',
          'application/x-www-form-urlencoded',
          'application/octet-stream',
          'multipart/form-data',
        ),
        async (path, body, contentType) => {
          const response = await fetch(`${ingest.url}${encodeURI(path)}`, {
            method: 'POST',
            headers: { 'content-type': contentType },
            body,
          });
          expect(response.status === 200 || (response.status >= 400 && response.status < 500)).toBe(true);
          if (response.status === 200) accepted.push(((await response.json()) as { id: string }).id);
        },
      ),
      { numRuns: 150 },
    );
    expect((await fetch(`${ingest.url}/health/live`)).status).toBe(200);
    const stored = await one<{ n: number }>(
      `SELECT count(*)::int AS n FROM event_logs WHERE id = ANY($1::uuid[])`,
      [accepted],
    );
    expect(stored.n).toBe(accepted.length);
    expect(accepted.length).toBeGreaterThan(0);
  }, 60_000);
});
