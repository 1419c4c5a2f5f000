import { createHmac, generateKeyPairSync, KeyObject, randomBytes, randomUUID, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { clickUrl, trackingKey } from '@edm/domain';
import { EventStore } from '@edm/event-store';
import { newEvent } from '@edm/events';
import { createDataSource } from '@edm/persistence';
import { allProjections } from '@edm/read-models';
import {
  createTestEnvironment,
  eventually,
  ServiceProcess,
  startService,
  TestEnvironment,
} from '@edm/testing';

type Json = Record<string, unknown>;

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: Json;
}

interface Account {
  id: string;
  key: string;
}

interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  minItems?: number;
  anyOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  format?: string;
  minLength?: number;
  minimum?: number;
}

interface Operation {
  requestBody?: { content: Record<string, { schema: JsonSchema }> };
}

const FIXTURES = resolve(__dirname, '../../../shared/provider-payloads');
/** A provider's documented payload, its header names in lower case. */
const fixture = (file: string) => {
  const { headers, body } = JSON.parse(readFileSync(join(FIXTURES, file), 'utf8')) as {
    headers: Record<string, string>;
    body: unknown;
  };
  return { headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v])), body };
};

const BODY_LIMIT = 262_144;
/** Tasks scheduled for tomorrow stay put: no dispatcher runs here, and none would send them yet. */
const tomorrow = () => new Date(Date.now() + 86_400_000).toISOString();

/** The smallest value a JSON schema accepts: required properties only, the first option of each choice. */
function sample(schema: JsonSchema): unknown {
  if (schema.const !== undefined) return schema.const;
  if (schema.enum) return schema.enum[0];
  if (schema.anyOf) return sample(schema.anyOf[0]);
  switch (schema.type) {
    case 'object':
      return Object.fromEntries((schema.required ?? []).map((key) => [key, sample(schema.properties![key])]));
    case 'array':
      return Array.from({ length: schema.minItems ?? 0 }, () => sample(schema.items ?? {}));
    case 'string':
      if (schema.format === 'email') return 'probe@example.com';
      if (schema.format === 'uuid') return randomUUID();
      if (schema.format === 'date-time') return new Date(Date.now() + 3_600_000).toISOString();
      return 'probe'.padEnd(schema.minLength ?? 0, 'x');
    case 'integer':
    case 'number':
      return Math.max(schema.minimum ?? 1, 1);
    case 'boolean':
      return false;
    case 'null':
      return null;
    default:
      return {};
  }
}

/**
 * The API and webhook-ingest as processes, probed as an attacker would: without a key and with
 * another tenant's, with forged signatures, oversized and hostile bodies, tampered click links and
 * SQL-looking text; and every answer and log line is searched for credentials and API keys.
 */
describe('security (e2e)', () => {
  let env: TestEnvironment;
  let api: ServiceProcess;
  let ingest: ServiceProcess;
  let db: Client;
  let adminKey: string;
  let a: Account;
  let b: Account;
  /** Account A's resources, by the collection their routes live under. */
  const owned: Record<string, string> = {};
  /** Every answer of the suite but the ones that hand out a new key, for the leak scan. */
  const answers: string[] = [];

  const send = async (
    base: string,
    method: string,
    path: string,
    {
      key,
      body,
      raw,
      headers = {},
    }: { key?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {},
  ): Promise<Answer> => {
    const response = await fetch(`${base}${path}`, {
      method,
      redirect: 'manual',
      headers: {
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      body: raw ?? (body !== undefined ? JSON.stringify(body) : undefined),
    });
    const text = await response.text();
    let json: Json = {};
    try {
      json = JSON.parse(text) as Json;
    } catch {
      // HTML pages, the pixel and empty bodies are not JSON
    }
    if (!path.startsWith('/api/v1/accounts') || method !== 'POST')
      answers.push(`${method} ${path} ${JSON.stringify([...response.headers])} ${text}`);
    return { status: response.status, headers: response.headers, text, json };
  };
  const call = (method: string, path: string, options: Parameters<typeof send>[3] = {}) =>
    send(api.url, method, path, options);
  const as = (account: Account) => async (method: string, path: string, body?: unknown) => {
    const answer = await call(method, path, { key: account.key, body });
    if (answer.status >= 300) throw new Error(`${method} ${path}: ${answer.status} ${answer.text}`);
    return answer.json;
  };
  const post = (path: string, raw: string, headers: Record<string, string> = {}) =>
    send(ingest.url, 'POST', path, { raw, headers: { 'content-type': 'application/json', ...headers } });
  const sandboxService = (account: Account, name: string) =>
    as(account)('POST', '/api/v1/services', {
      name,
      provider: 'sandbox',
      from: { email: 'news@example.com' },
      pace: { intervalMs: 1_000 },
      options: { latencyMs: 0, callbacks: { delivered: 0 } },
    });
  const storedWebhooks = async () =>
    ((await db.query(`SELECT count(*)::int AS n FROM event_logs`)).rows[0] as { n: number }).n;
  const ready = async (service: ServiceProcess) => {
    expect(service.process.exitCode).toBeNull();
    expect((await fetch(`${service.url}/health/ready`)).status).toBe(200);
  };

  beforeAll(async () => {
    env = await createTestEnvironment('security');
    const common = { ...env.env, LOG_LEVEL: 'debug', HTTP_BODY_LIMIT_BYTES: String(BODY_LIMIT) };
    api = await startService('api', common);
    ingest = await startService('webhook-ingest', { ...common, INGEST_POLL_INTERVAL_MS: '200' });
    adminKey = readFileSync(join(env.home, 'admin-key'), 'utf8').trim();
    db = new Client({ connectionString: env.databaseUrl });
    await db.connect();
    const account = async (name: string): Promise<Account> => {
      const created = await call('POST', '/api/v1/accounts', { key: adminKey, body: { name } });
      expect(created.status).toBe(201);
      return { id: created.json.id as string, key: created.json.apiKey as string };
    };
    a = await account('tenant A');
    b = await account('tenant B');

    const asA = as(a);
    owned.services = (await sandboxService(a, 'A sender')).id as string;
    owned.templates = (
      await asA('POST', '/api/v1/templates', { name: 'A template', subject: 's', text: 'A secret plan' })
    ).id as string;
    await asA('POST', '/api/v1/contacts', {
      contacts: [{ email: 'a-reader@example.com', tags: ['a-only'] }],
    });
    owned.contacts = ((await asA('GET', '/api/v1/contacts?tag=a-only')).items as Json[])[0].id as string;
    owned.tasks = (
      await asA('POST', '/api/v1/tasks', {
        name: 'A task',
        templateId: owned.templates,
        recipients: { tags: ['a-only'] },
        serviceIds: [owned.services],
        scheduledAt: tomorrow(),
      })
    ).id as string;
    // Alerts come from the monitor; one about A's task is raised the way it raises them.
    const source: DataSource = createDataSource({
      url: env.databaseUrl,
      poolSize: 1,
      applicationName: 'test',
    });
    await source.initialize();
    try {
      const store = new EventStore(source);
      store.register(...allProjections);
      owned.alerts = randomUUID();
      await store.appendToStream(
        `alert-${owned.alerts}`,
        'no_stream',
        [
          newEvent('AlertRaised', {
            alertId: owned.alerts,
            kind: 'task-stalled',
            subject: `task:${owned.tasks}`,
            accountId: a.id,
            severity: 'warning',
            message: 'A task stalled',
            details: {},
          }),
        ],
        { correlationId: randomUUID(), causationId: null, actor: 'test' },
      );
    } finally {
      await source.destroy();
    }
  }, 60_000);

  afterAll(async () => {
    await db?.end();
    const codes = await Promise.all([api, ingest].map((p) => p?.stop()));
    expect(codes).toEqual([0, 0]);
    await env?.dispose();
  }, 60_000);

  it('documents every route the API serves, refuses each without a valid key (401) and hides every resource of another account (404)', async () => {
    const doc = (await call('GET', '/api/docs-json')).json as {
      paths: Record<string, Record<string, Operation>>;
    };
    const documented = Object.entries(doc.paths).flatMap(([path, operations]) =>
      Object.entries(operations).map(([method, operation]) => ({
        method: method.toUpperCase(),
        path,
        operation,
      })),
    );
    // The routes Nest mapped at start-up: a route missing from the document would escape the probes.
    const mapped = [...api.output().matchAll(/"msg":"Mapped \{(\/api\/v1[^,]*), (\w+)\} route"/g)].map(
      ([, path, method]) => `${method} ${path.replace(/:(\w+)/g, '{$1}')}`,
    );
    expect(documented.map((r) => `${r.method} ${r.path}`).sort()).toEqual(mapped.sort());
    expect(documented.length).toBeGreaterThan(20);

    const probe = (method: string, path: string, operation: Operation, key?: string) => {
      const [contentType, media] = Object.entries(operation.requestBody?.content ?? {})[0] ?? [];
      if (contentType && contentType !== 'application/json')
        return call(method, path, {
          key,
          raw: 'email\nprobe@example.com\n',
          headers: { 'content-type': contentType },
        });
      return call(method, path, {
        key,
        body: method === 'GET' ? undefined : media ? sample(media.schema) : {},
      });
    };
    const before = {
      task: await as(a)('GET', `/api/v1/tasks/${owned.tasks}`),
      service: await as(a)('GET', `/api/v1/services/${owned.services}`),
    };
    const secretsOfA = [...Object.values(owned), 'A secret plan', 'a-reader@example.com'];
    for (const { method, path, operation } of documented) {
      const collection = /^\/api\/v1\/([^/]+)/.exec(path)![1];
      const concrete = path.replace('{id}', owned[collection] ?? randomUUID());
      const route = `${method} ${path}`;
      expect({ route, status: (await probe(method, concrete, operation)).status }).toEqual({
        route,
        status: 401,
      });
      expect({ route, status: (await probe(method, concrete, operation, 'edm_acc_forged')).status }).toEqual({
        route,
        status: 401,
      });
      if (path.includes('{id}')) {
        expect({ route, owned: collection in owned }).toEqual({ route, owned: true });
        const answer = await probe(method, concrete, operation, b.key);
        expect({ route, status: answer.status, code: answer.json.error }).toEqual({
          route,
          status: 404,
          code: expect.objectContaining({ code: 'NOT_FOUND' }),
        });
        // Word for word the answer for an id that exists nowhere: nothing tells B the resource exists.
        const nowhere = await probe(method, path.replace('{id}', randomUUID()), operation, b.key);
        expect({ route, answer: answer.text }).toEqual({ route, answer: nowhere.text });
      } else if (method === 'GET') {
        const answer = await probe(method, concrete, operation, b.key);
        expect({ route, status: [200, 403].includes(answer.status) }).toEqual({ route, status: true });
        for (const secret of secretsOfA)
          expect({ route, leaks: answer.text.includes(secret) }).toEqual({ route, leaks: false });
      }
    }

    // A's resources are real (A sees them), and B's attempts changed none of them.
    const asA = as(a);
    for (const collection of ['services', 'templates', 'tasks'])
      expect((await asA('GET', `/api/v1/${collection}/${owned[collection]}`)).id).toBe(owned[collection]);
    const alerts = (await asA('GET', '/api/v1/alerts')).items as Json[];
    expect(alerts.find((alert) => alert.id === owned.alerts)).toMatchObject({ acknowledgedAt: null });
    expect(await asA('GET', `/api/v1/tasks/${owned.tasks}`)).toEqual(before.task);
    expect(await asA('GET', `/api/v1/services/${owned.services}`)).toEqual(before.service);

    // Nor can B reach A's template, services or contacts by naming them in a task of its own: the
    // answer is the one for an id that exists nowhere.
    const references: [string, (id: string) => Json][] = [
      ['templates', (id) => ({ templateId: id })],
      ['services', (id) => ({ serviceIds: [id] })],
      ['contacts', (id) => ({ recipients: { contactIds: [id] } })],
    ];
    for (const [collection, reference] of references) {
      const task = (id: string) =>
        call('POST', '/api/v1/tasks', {
          key: b.key,
          body: {
            name: 'borrowed',
            subject: 's',
            text: 't',
            recipients: { emails: ['b@example.com'] },
            ...reference(id),
          },
        });
      const theirs = await task(owned[collection]);
      const nobodys = await task(randomUUID());
      expect({ collection, status: theirs.status }).toEqual({ collection, status: nobodys.status });
      if (theirs.status === 201) expect(theirs.json.counts).toEqual(nobodys.json.counts);
      else expect(theirs.json).toEqual(nobodys.json);
      expect(theirs.text).not.toContain('A secret plan');
    }
  }, 60_000);

  it('refuses webhooks whose signature does not verify with 401, for every provider that checks one', async () => {
    const service = async (provider: string, credentials: Json, options: Json) =>
      (
        await as(a)('POST', '/api/v1/services', {
          name: `${provider} signed`,
          provider,
          from: { email: 'news@example.com' },
          pace: { intervalMs: 1_000 },
          credentials,
          options: { baseUrl: 'http://127.0.0.1:9', ...options },
        })
      ).id as string;
    const timestamp = String(Math.floor(Date.now() / 1000));
    const hmac = (key: string, data: string) => createHmac('sha256', key).update(data).digest('hex');

    // EngageLab: HMAC-SHA256 of the timestamp header, keyed with the app key.
    const appKey = 'engagelab-app-key';
    const engagelab = `/api/webhooks/engagelab/${await service(
      'engagelab',
      { apiUser: 'u', apiKey: 'k' },
      { webhookAppKey: appKey, webhookAppSecret: 'app-secret', webhookSignatureScheme: 'hmac-sha256' },
    )}`;
    const engagelabBody = JSON.stringify(fixture('engagelab-target.json').body);
    const engagelabSigned = (key: string) => ({
      'X-WebHook-Timestamp': timestamp,
      'X-WebHook-AppKey': appKey,
      'X-WebHook-Signature': hmac(key, timestamp),
    });

    // SendGrid: ECDSA P-256 over the timestamp header and the raw body.
    const ecKey = () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const sendgridKey = ecKey();
    const sendgrid = `/api/webhooks/sendgrid/${await service(
      'sendgrid',
      { apiKey: 'SG.x' },
      { webhookPublicKey: sendgridKey.publicKey.export({ format: 'der', type: 'spki' }).toString('base64') },
    )}`;
    const sendgridBody = JSON.stringify(fixture('sendgrid-delivered.json').body);
    const sendgridSigned = (key: KeyObject) => ({
      'X-Twilio-Email-Event-Webhook-Timestamp': timestamp,
      'X-Twilio-Email-Event-Webhook-Signature': sign('sha256', Buffer.from(timestamp + sendgridBody), {
        key,
        dsaEncoding: 'der',
      }).toString('base64'),
    });

    // Mailgun: HMAC-SHA256 of the body's timestamp and token, keyed with the signing key.
    const mailgun = `/api/webhooks/mailgun/${await service(
      'mailgun',
      { apiKey: 'key', domain: 'mg.example.com' },
      { webhookSigningKey: 'mailgun-signing-key' },
    )}`;
    const mailgunFixture = fixture('mailgun-delivered.json').body as Json;
    const mailgunSigned = (key: string) => {
      const token = randomBytes(25).toString('hex');
      const signature = { timestamp, token, signature: hmac(key, `${timestamp}${token}`) };
      return JSON.stringify({ ...mailgunFixture, signature });
    };

    // Postmark: basic-auth credentials in the webhook URL.
    const postmark = `/api/webhooks/postmark/${await service(
      'postmark',
      { serverToken: 'token' },
      { webhookUsername: 'hook', webhookPassword: 'pm-password' },
    )}`;
    const postmarkBody = JSON.stringify(fixture('postmark-delivery.json').body);
    const basic = (password: string) => ({
      authorization: `Basic ${Buffer.from(`hook:${password}`).toString('base64')}`,
    });

    // SES: the SNS signature is always checked, and a certificate off Amazon's hosts is never fetched.
    const ses = `/api/webhooks/ses/${await service(
      'ses',
      { region: 'us-east-1', accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 's' },
      {},
    )}`;
    const sns = fixture('ses-sns-delivery.json');
    const snsWith = (changes: Json) => JSON.stringify({ ...(sns.body as Json), ...changes });

    const cases: [string, string, string, Record<string, string>, number][] = [
      ['engagelab signed', engagelab, engagelabBody, engagelabSigned(appKey), 200],
      ['engagelab forged', engagelab, engagelabBody, engagelabSigned('guessed'), 401],
      ['engagelab unsigned', engagelab, engagelabBody, {}, 401],
      // Once an EngageLab service has a secret, the generic path needs a signature too.
      [
        'engagelab generic, forged',
        '/api/webhooks/mail-event',
        engagelabBody,
        engagelabSigned('guessed'),
        401,
      ],
      ['engagelab generic, unsigned', '/api/webhooks/mail-event', engagelabBody, {}, 401],
      ['sendgrid signed', sendgrid, sendgridBody, sendgridSigned(sendgridKey.privateKey), 200],
      ['sendgrid, another key', sendgrid, sendgridBody, sendgridSigned(ecKey().privateKey), 401],
      [
        'sendgrid tampered',
        sendgrid,
        sendgridBody.replace('@', '+x@'),
        sendgridSigned(sendgridKey.privateKey),
        401,
      ],
      ['sendgrid unsigned', sendgrid, sendgridBody, {}, 401],
      ['mailgun signed', mailgun, mailgunSigned('mailgun-signing-key'), {}, 200],
      ['mailgun forged', mailgun, mailgunSigned('guessed'), {}, 401],
      ['mailgun, an old signature', mailgun, JSON.stringify(mailgunFixture), {}, 401],
      ['postmark authorised', postmark, postmarkBody, basic('pm-password'), 200],
      ['postmark wrong password', postmark, postmarkBody, basic('guessed'), 401],
      ['postmark unauthorised', postmark, postmarkBody, {}, 401],
      [
        'ses, foreign certificate',
        ses,
        snsWith({ SigningCertURL: 'https://evil.example.com/c.pem' }),
        sns.headers,
        401,
      ],
      // SNS's certificate cannot be fetched here, so a message from an SNS host is undecided:
      // 503, which SNS retries, and not stored. The tampered message's 401 with a certificate
      // at hand is in libs/providers/src/webhooks/sns.signature.spec.ts.
      ['ses tampered', ses, snsWith({ Message: '{"eventType":"Delivery"}' }), sns.headers, 503],
    ];
    const storedBefore = await storedWebhooks();
    for (const [what, path, body, headers, status] of cases)
      expect({ what, status: (await post(path, body, headers)).status }).toEqual({ what, status });
    // Refused requests are not stored, and each refusal is logged with its reason.
    expect(await storedWebhooks()).toBe(storedBefore + cases.filter((c) => c[4] === 200).length);
    const refusals = ingest.output().match(/webhook signature refused/g) ?? [];
    expect(refusals.length).toBeGreaterThanOrEqual(cases.filter((c) => c[4] === 401).length);
  }, 60_000);

  it('never answers or logs a credential, a webhook secret or an API key', async () => {
    const canaries: string[] = [];
    const secret = () => {
      canaries.push(`sk-SECRET-canary-${randomBytes(8).toString('hex')}`);
      return canaries[canaries.length - 1];
    };
    const configs: [string, Json, Json][] = [
      [
        'engagelab',
        { apiUser: 'canary-user', apiKey: secret() },
        { webhookAppKey: secret(), webhookAppSecret: secret() },
      ],
      ['sendgrid', { apiKey: secret() }, {}],
      ['mailgun', { apiKey: secret(), domain: 'mg.example.com' }, { webhookSigningKey: secret() }],
      ['postmark', { serverToken: secret() }, { webhookUsername: 'hook', webhookPassword: secret() }],
      ['ses', { region: 'us-east-1', accessKeyId: secret(), secretAccessKey: secret() }, {}],
      ['smtp', { host: '127.0.0.1', port: 9, secure: false, user: 'canary-user', pass: secret() }, {}],
    ];
    const asA = as(a);
    const ids: string[] = [];
    for (const [provider, credentials, options] of configs) {
      const created = await asA('POST', '/api/v1/services', {
        name: `${provider} with secrets`,
        provider,
        from: { email: 'news@example.com' },
        pace: { intervalMs: 1_000 },
        credentials,
        options: provider === 'smtp' ? options : { baseUrl: 'http://127.0.0.1:9', ...options },
      });
      expect(created.hasCredentials).toBe(true);
      ids.push(created.id as string);
    }
    const [engagelab, sendgrid, mailgun, postmark] = ids;
    await asA('GET', '/api/v1/services');
    for (const id of ids) await asA('GET', `/api/v1/services/${id}`);
    await asA('PATCH', `/api/v1/services/${sendgrid}`, { credentials: { apiKey: secret() } });
    await asA('PATCH', `/api/v1/services/${mailgun}`, { options: { webhookSigningKey: secret() } });
    await asA('POST', `/api/v1/services/${postmark}/freeze`, { reason: 'checking' });
    await asA('POST', `/api/v1/services/${postmark}/unfreeze`);
    await asA('POST', `/api/v1/services/${engagelab}/disable`, {});
    await asA('POST', `/api/v1/services/${engagelab}/enable`);
    // Refusals that carry secrets in the request.
    const badService = (changes: Json) =>
      call('POST', '/api/v1/services', {
        key: a.key,
        body: { name: 'bad', from: { email: 'news@example.com' }, pace: { intervalMs: 1 }, ...changes },
      });
    const refused = [
      await badService({ provider: 'ses', credentials: { secretAccessKey: secret(), region: 42 } }),
      await badService({
        provider: 'sendgrid',
        from: { email: 'not-an-address' },
        credentials: { apiKey: secret() },
      }),
      await call('PATCH', `/api/v1/services/${sendgrid}`, {
        key: a.key,
        body: { credentials: { apiKey: 7, token: secret() } },
      }),
      await call('POST', '/api/v1/services', {
        key: a.key,
        raw: `{"credentials":{"apiKey":"${secret()}"`,
        headers: { 'content-type': 'application/json' },
      }),
      await call('POST', '/api/v1/services', { key: secret(), body: {} }),
    ];
    expect(refused.map((r) => r.status)).toEqual([400, 400, 400, 400, 401]);
    // Services used: a task, its diagnosis, repair and timeline, and webhooks with wrong secrets.
    await asA('POST', '/api/v1/contacts', { contacts: [{ email: 'canary@example.com', tags: ['canary'] }] });
    const task = (
      await asA('POST', '/api/v1/tasks', {
        name: 'canary',
        subject: 's',
        text: 't',
        recipients: { tags: ['canary'] },
        serviceIds: ids,
        scheduledAt: tomorrow(),
      })
    ).id as string;
    for (const path of ['', '/diagnosis', '/events', '/subtasks'])
      await asA('GET', `/api/v1/tasks/${task}${path}`);
    await asA('POST', `/api/v1/tasks/${task}/repair`);
    await asA('GET', '/api/v1/alerts');
    await post(`/api/webhooks/postmark/${postmark}`, '{"RecordType":"Delivery"}', {
      authorization: `Basic ${Buffer.from(`hook:${secret()}`).toString('base64')}`,
    });
    await post(
      `/api/webhooks/mailgun/${mailgun}`,
      JSON.stringify({ signature: { timestamp: '1', token: 't', signature: 'f'.repeat(64) } }),
    );
    await post(`/api/webhooks/engagelab/${engagelab}`, '{}', {
      'X-WebHook-Timestamp': '1',
      'X-WebHook-Signature': secret(),
    });
    for (const service of [api, ingest]) await send(service.url, 'GET', '/metrics');

    const apiKeys = [adminKey, a.key, b.key];
    // The generated admin key goes to its file only: the service's output names the file, not the key.
    expect(api.output()).toContain(join(env.home, 'admin-key'));
    const scanned = {
      answers: answers.join('\n'),
      api: api.output(),
      ingest: ingest.output(),
    };
    expect(scanned.answers.length).toBeGreaterThan(10_000);
    for (const [where, text] of Object.entries(scanned)) {
      for (const value of [...canaries, ...apiKeys])
        expect({ where, value, found: text.includes(value) }).toEqual({ where, value, found: false });
      expect({ where, found: /sk-SECRET-canary/.test(text) }).toEqual({ where, found: false });
    }
  }, 60_000);

  it('refuses oversized bodies with 413 and deeply nested JSON with 400 before storing anything, on both services, and stays up', async () => {
    const service = (await sandboxService(a, 'hostile bodies')).id as string;
    const storedBefore = await storedWebhooks();
    const big = JSON.stringify({ contacts: [{ email: 'big@example.com', name: 'x'.repeat(BODY_LIMIT) }] });
    const chunked = (text: string) =>
      new ReadableStream<Uint8Array>({
        start(controller) {
          for (let i = 0; i < text.length; i += 65_536)
            controller.enqueue(Buffer.from(text.slice(i, i + 65_536)));
          controller.close();
        },
      });
    const streamed = (url: string, text: string, headers: Record<string, string>) =>
      fetch(url, { method: 'POST', headers, body: chunked(text), duplex: 'half' } as RequestInit);
    const nested = '['.repeat(100_000) + ']'.repeat(100_000);
    const nestedObject = '{"a":'.repeat(30_000) + '1' + '}'.repeat(30_000);

    const json = { 'content-type': 'application/json' };
    const auth = { ...json, authorization: `Bearer ${a.key}` };
    const cases: [string, Promise<{ status: number }>, number][] = [
      ['api oversized', call('POST', '/api/v1/contacts', { key: a.key, raw: big, headers: json }), 413],
      ['api oversized, chunked', streamed(`${api.url}/api/v1/contacts`, big, auth), 413],
      [
        'api CSV over 16 MiB',
        call('POST', '/api/v1/contacts/import', {
          key: a.key,
          raw: 'email\n' + 'x'.repeat(16 * 1_048_576),
          headers: { 'content-type': 'text/csv' },
        }),
        413,
      ],
      ['api nested body', call('POST', '/api/v1/contacts', { key: a.key, raw: nested, headers: json }), 400],
      [
        'api nested inside a valid request',
        call('POST', '/api/v1/services', {
          key: a.key,
          raw: `{"name":"deep","provider":"sandbox","from":{"email":"news@example.com"},"pace":{"intervalMs":1},"options":{"x":${nested}}}`,
          headers: json,
        }),
        400,
      ],
      [
        'api nested object',
        call('POST', '/api/v1/templates', { key: a.key, raw: nestedObject, headers: json }),
        400,
      ],
      ['ingest oversized', post(`/api/webhooks/sandbox/${service}`, 'x'.repeat(BODY_LIMIT + 1)), 413],
      [
        'ingest oversized, chunked',
        streamed(`${ingest.url}/api/webhooks/sandbox/${service}`, 'x'.repeat(BODY_LIMIT + 1), json),
        413,
      ],
      ['ingest nested', post(`/api/webhooks/sandbox/${service}`, nested), 400],
      ['ingest nested object', post('/api/webhooks/mail-event', nestedObject), 400],
      [
        'ingest nested as text',
        post(`/api/webhooks/sandbox/${service}`, nested, { 'content-type': 'text/plain' }),
        400,
      ],
    ];
    for (const [what, answer, status] of cases)
      expect({ what, status: (await answer).status }).toEqual({ what, status });

    expect(await storedWebhooks()).toBe(storedBefore);
    const names = (await as(a)('GET', '/api/v1/services')).items as Json[];
    expect(names.map((s) => s.name)).not.toContain('deep');
    for (const running of [api, ingest]) {
      await ready(running);
      expect(running.output()).not.toMatch(/unhandled error|RangeError|Maximum call stack/);
    }
    expect((await post(`/api/webhooks/sandbox/${service}`, '{"events":[]}')).status).toBe(200);
  }, 60_000);

  it('redirects a click only to the URL signed for that mail: never an open redirect', async () => {
    const key = trackingKey(Buffer.from(env.env.EDM_ENCRYPTION_KEY, 'base64'));
    const trackingId = randomBytes(16).toString('hex');
    const target = 'https://shop.example.com/sale?x=1&y=2';
    const signature = (signingKey: Buffer, url: string) =>
      new URL(clickUrl(ingest.url, signingKey, trackingId, url)).searchParams.get('s')!;
    const s = signature(key, target);
    const click = (id: string, query: string) => send(ingest.url, 'GET', `/t/click/${id}?${query}`);
    const u = (url: string) => `u=${encodeURIComponent(url)}`;

    const genuine = await click(trackingId, `${u(target)}&s=${s}`);
    expect(genuine.status).toBe(302);
    expect(genuine.headers.get('location')).toBe(target);

    const otherId = randomBytes(16).toString('hex');
    const tampered: [string, string, string][] = [
      ['foreign URL, genuine signature', trackingId, `${u('https://evil.example.com/')}&s=${s}`],
      ['user-info trick', trackingId, `${u('https://shop.example.com@evil.example.com/')}&s=${s}`],
      ['another mail', otherId, `${u(target)}&s=${s}`],
      ['no signature', trackingId, u('https://evil.example.com/')],
      ['empty signature', trackingId, `${u('https://evil.example.com/')}&s=`],
      ['altered signature', trackingId, `${u(target)}&s=${s.slice(0, -1)}${s.endsWith('A') ? 'B' : 'A'}`],
      ['signature of another key', trackingId, `${u(target)}&s=${signature(randomBytes(32), target)}`],
      ['second u', trackingId, `${u(target)}&${u('https://evil.example.com/')}&s=${s}`],
      // Even signed, only http(s) URLs are followed.
      [
        'scheme-relative',
        trackingId,
        `${u('//evil.example.com/')}&s=${signature(key, '//evil.example.com/')}`,
      ],
      ['javascript:', trackingId, `${u('javascript:alert(1)')}&s=${signature(key, 'javascript:alert(1)')}`],
      ['no URL', trackingId, `s=${s}`],
    ];
    for (const [what, id, query] of tampered) {
      const answer = await click(id, query);
      expect({ what, status: answer.status, location: answer.headers.get('location') }).toEqual({
        what,
        status: 404,
        location: null,
      });
    }
    expect((await send(ingest.url, 'GET', `/t/click/..%2f..%2fhealth?${u(target)}&s=${s}`)).status).toBe(404);
  }, 60_000);

  it('stores SQL-looking input literally and reads it back byte-identical, with every table intact', async () => {
    const hostile = [
      `'; DROP TABLE contacts; --`,
      `Robert'); DELETE FROM tasks;--`,
      `1' OR '1'='1`,
      `" OR ""="`,
      `$1 $$ $tag$ ; TRUNCATE events; --`,
      `\\'; SELECT pg_sleep(5); --`,
      `%_ \\% ' || (SELECT current_user) || '`,
      `/* */ UNION SELECT key_hash FROM api_keys --`,
      `Ünïcödé ✉ 🚀 \u2028 end`,
    ];
    const tables = async () =>
      (
        await db.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`)
      ).rows.map((r: { tablename: string }) => r.tablename);
    const tablesBefore = await tables();
    const counts = async () =>
      (
        await db.query(
          `SELECT (SELECT count(*)::int FROM contacts) AS contacts, (SELECT count(*)::int FROM tasks) AS tasks,
                  (SELECT count(*)::int FROM events) AS events, (SELECT count(*)::int FROM api_keys) AS keys`,
        )
      ).rows[0] as Record<string, number>;
    const countsBefore = await counts();
    const asA = as(a);

    const tag = 'sql-literal';
    const attributes = Object.fromEntries(hostile.map((text, i) => [`${text.slice(0, 40)} ${i}`, text]));
    await asA('POST', '/api/v1/contacts', {
      contacts: hostile.map((text, i) => ({
        email: `sql-${i}@example.com`,
        name: text,
        attributes,
        tags: [tag, text],
      })),
    });
    for (const [i, text] of hostile.entries()) {
      const found = (
        await asA('GET', `/api/v1/contacts?tag=${encodeURIComponent(text)}&email=sql-${i}@example.com`)
      ).items as Json[];
      expect(found).toHaveLength(1);
      expect(found[0]).toMatchObject({ name: text, attributes, tags: [tag, text] });
    }
    expect(
      (await asA('GET', `/api/v1/contacts?email=${encodeURIComponent(hostile[0])}`)).items as Json[],
    ).toEqual([]);

    const sender = await asA('POST', '/api/v1/services', {
      name: hostile[0],
      provider: 'sandbox',
      from: { email: 'news@example.com', name: hostile[1] },
      pace: { intervalMs: 1_000 },
    });
    expect(await asA('GET', `/api/v1/services/${sender.id}`)).toMatchObject({
      name: hostile[0],
      from: { email: 'news@example.com', name: hostile[1] },
    });
    await asA('PATCH', `/api/v1/services/${sender.id}`, { name: hostile[2] });
    expect((await asA('GET', `/api/v1/services/${sender.id}`)).name).toBe(hostile[2]);

    for (const text of hostile) {
      const template = await asA('POST', '/api/v1/templates', {
        name: text,
        subject: text,
        html: `<p>${text}</p>`,
        text,
      });
      expect(await asA('GET', `/api/v1/templates/${template.id}`)).toMatchObject({
        name: text,
        subject: text,
        html: `<p>${text}</p>`,
        text,
      });
      const task = await asA('POST', '/api/v1/tasks', {
        name: text,
        subject: text,
        html: `<p>${text}</p>`,
        text,
        recipients: { tags: [text] },
        serviceIds: [sender.id],
        scheduledAt: tomorrow(),
      });
      expect(task.counts).toMatchObject({ total: 1 });
      expect(await asA('GET', `/api/v1/tasks/${task.id}`)).toMatchObject({ name: text, subject: text });
      const created = ((await asA('GET', `/api/v1/tasks/${task.id}/events`)).items as Json[]).find(
        (e) => e.type === 'TaskCreated',
      );
      expect(created?.data).toMatchObject({ name: text, subject: text, html: `<p>${text}</p>`, text });
    }

    const stored: string[] = [];
    for (const text of hostile) {
      const body = JSON.stringify({
        events: [
          {
            eventId: text,
            type: 'delivered',
            email: `${text}@example.com`,
            trackingId: text,
            timestamp: Date.now(),
          },
        ],
      });
      const answer = await post(`/api/webhooks/sandbox/${sender.id}`, body);
      expect(answer.status).toBe(200);
      const { rows } = await db.query(`SELECT raw_body FROM event_logs WHERE id = $1`, [answer.json.id]);
      expect(rows[0]).toEqual({ raw_body: body });
      stored.push(answer.json.id as string);
    }
    await eventually('hostile webhooks processed', async () => {
      const { rows } = await db.query(
        `SELECT count(*)::int AS n FROM event_logs WHERE id = ANY($1::uuid[]) AND status <> 'received'`,
        [stored],
      );
      return (rows[0] as { n: number }).n === stored.length;
    });
    expect((await send(ingest.url, 'POST', `/t/unsubscribe/${encodeURIComponent(hostile[1])}`)).status).toBe(
      404,
    );
    expect((await post(`/api/webhooks/sandbox/${encodeURIComponent(hostile[2])}`, '{}')).status).toBe(404);

    expect(await tables()).toEqual(tablesBefore);
    const countsAfter = await counts();
    expect(countsAfter.contacts).toBe(countsBefore.contacts + hostile.length);
    expect(countsAfter.tasks).toBe(countsBefore.tasks + hostile.length);
    expect(countsAfter.keys).toBe(countsBefore.keys);
    expect(countsAfter.events).toBeGreaterThan(countsBefore.events);
    for (const running of [api, ingest]) await ready(running);
  }, 60_000);
});
