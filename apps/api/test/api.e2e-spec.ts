import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { createTestEnvironment, ServiceProcess, startService, TestEnvironment } from '@edm/testing';

/** The API as a process, over HTTP, on a database and stream of its own. */
describe('api (e2e)', () => {
  let env: TestEnvironment;
  let api: ServiceProcess;
  let db: Client;
  let adminKey: string;
  let otherKey: string;

  const call = async (
    method: string,
    path: string,
    options: { key?: string | null; body?: unknown; raw?: string; headers?: Record<string, string> } = {},
  ) => {
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    const key = options.key === undefined ? adminKey : options.key;
    if (key) headers.authorization = `Bearer ${key}`;
    let body: string | undefined;
    if (options.raw !== undefined) body = options.raw;
    else if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    const response = await fetch(`${api.url}${path}`, { method, headers, body });
    const text = await response.text();
    let json: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- response bodies are checked field by field
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = text;
    }
    return { status: response.status, body: json, text };
  };

  const sandboxService = (name: string) => ({
    name,
    provider: 'sandbox',
    from: { email: 'news@example.com', name: 'News' },
    pace: { intervalMs: 310 },
  });

  beforeAll(async () => {
    env = await createTestEnvironment('api-e2e');
    api = await startService('api', env.env);
    adminKey = readFileSync(join(env.home, 'admin-key'), 'utf8').trim();
    db = new Client({ connectionString: env.databaseUrl });
    await db.connect();
    const account = await call('POST', '/api/v1/accounts', { body: { name: 'other tenant' } });
    otherKey = account.body.apiKey;
  }, 60_000);

  afterAll(async () => {
    await db?.end();
    const code = await api?.stop();
    expect(code).toBe(0);
    await env?.dispose();
  });

  describe('auth', () => {
    it('writes the admin key file with mode 0600 and prints nothing of it to the JSON log', () => {
      expect(adminKey).toMatch(/^edm_adm_/);
      const logs = api
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'));
      expect(logs.join('\n')).not.toContain(adminKey);
    });

    it.each([
      ['GET', '/api/v1/services'],
      ['POST', '/api/v1/services'],
      ['GET', '/api/v1/contacts'],
      ['POST', '/api/v1/contacts'],
      ['POST', '/api/v1/contacts/import'],
      ['GET', '/api/v1/templates'],
      ['GET', '/api/v1/tasks'],
      ['POST', '/api/v1/tasks'],
      ['GET', '/api/v1/tasks/00000000-0000-7000-8000-000000000000'],
      ['POST', '/api/v1/accounts'],
    ])('%s %s without a key is 401', async (method, path) => {
      const response = await call(method, path, { key: null, body: method === 'GET' ? undefined : {} });
      expect(response.status).toBe(401);
      expect(response.body.error.code).toBe('UNAUTHENTICATED');
    });

    it('refuses an unknown key and a malformed header', async () => {
      expect((await call('GET', '/api/v1/tasks', { key: 'edm_acc_nope' })).status).toBe(401);
      expect(
        (await call('GET', '/api/v1/tasks', { key: null, headers: { authorization: 'Basic abc' } })).status,
      ).toBe(401);
    });

    it("answers 404 for another account's resources and 403 for admin routes", async () => {
      const service = await call('POST', '/api/v1/services', { body: sandboxService('mine') });
      await call('POST', '/api/v1/contacts', {
        body: { contacts: [{ email: 'iso@example.com', tags: ['iso'] }] },
      });
      const task = await call('POST', '/api/v1/tasks', {
        body: { name: 'mine', subject: 's', text: 't', recipients: { tags: ['iso'] } },
      });
      expect(task.status).toBe(201);
      for (const path of [
        `/api/v1/services/${service.body.id}`,
        `/api/v1/tasks/${task.body.id}`,
        `/api/v1/tasks/${task.body.id}/subtasks`,
      ]) {
        expect((await call('GET', path, { key: otherKey })).status).toBe(404);
      }
      expect((await call('POST', `/api/v1/tasks/${task.body.id}/pause`, { key: otherKey })).status).toBe(404);
      expect((await call('GET', '/api/v1/contacts?tag=iso', { key: otherKey })).body.items).toEqual([]);
      expect((await call('POST', '/api/v1/accounts', { key: otherKey, body: { name: 'x' } })).status).toBe(
        403,
      );
    });
  });

  describe('services', () => {
    it('creates, reads, updates, freezes and unfreezes; credentials are never echoed and are sealed at rest', async () => {
      const created = await call('POST', '/api/v1/services', {
        body: {
          name: 'SG',
          provider: 'sendgrid',
          from: { email: 'a@example.com' },
          pace: { perSecond: 5, burst: 5 },
          dailyQuota: 1000,
          credentials: { apiKey: 'SG.super-secret-value' },
        },
      });
      expect(created.status).toBe(201);
      expect(created.text).not.toContain('super-secret');
      expect(created.body).toMatchObject({
        provider: 'sendgrid',
        status: 'active',
        quotaLeft: 1000,
        hasCredentials: true,
      });
      const [row] = (
        await db.query(`SELECT credentials_sealed FROM sending_services WHERE id = $1`, [created.body.id])
      ).rows;
      expect(row.credentials_sealed).toMatch(/^v1\./);
      expect(row.credentials_sealed).not.toContain('super-secret');
      const events = await db.query(`SELECT data::text FROM events WHERE stream_id = $1`, [
        `service-${created.body.id}`,
      ]);
      expect(events.rows.map((r) => r.data).join()).not.toContain('super-secret');

      const patched = await call('PATCH', `/api/v1/services/${created.body.id}`, {
        body: { pace: { intervalMs: 1000 }, name: 'SG main' },
      });
      expect(patched.body).toMatchObject({ name: 'SG main', pace: { intervalMs: 1000 } });
      const frozen = await call('POST', `/api/v1/services/${created.body.id}/freeze`, {
        body: { reason: 'provider suspended the account' },
      });
      expect(frozen.body).toMatchObject({ status: 'frozen', statusReason: 'provider suspended the account' });
      expect((await call('POST', `/api/v1/services/${created.body.id}/unfreeze`)).body.status).toBe('active');
      expect((await call('POST', `/api/v1/services/${created.body.id}/unfreeze`)).status).toBe(409);
      const list = await call('GET', '/api/v1/services');
      expect(list.text).not.toContain('super-secret');
    });

    it('answers validation errors field by field', async () => {
      const response = await call('POST', '/api/v1/services', {
        body: { name: '', provider: 'carrier-pigeon', from: { email: 'nope' }, pace: { intervalMs: -1 } },
      });
      expect(response.status).toBe(400);
      const fields = response.body.error.fields.map((f: { field: string }) => f.field);
      expect(fields).toEqual(expect.arrayContaining(['name', 'provider', 'from.email']));
      const missingCredentials = await call('POST', '/api/v1/services', {
        body: { name: 'x', provider: 'postmark', from: { email: 'a@example.com' }, pace: { intervalMs: 10 } },
      });
      expect(missingCredentials.status).toBe(400);
      expect(missingCredentials.body.error.fields[0].field).toMatch(/^credentials/);
    });
  });

  describe('contacts', () => {
    it('normalises emails and merges duplicates', async () => {
      const first = await call('POST', '/api/v1/contacts', {
        body: {
          contacts: [
            { email: ' Dup@Example.COM ', name: 'Dup', tags: ['a'] },
            { email: 'dup@example.com', attributes: { city: 'Lyon' }, tags: ['b'] },
          ],
        },
      });
      expect(first.body).toMatchObject({ created: 1, updated: 0 });
      const again = await call('POST', '/api/v1/contacts', {
        body: { contacts: [{ email: 'DUP@example.com', tags: ['c'] }] },
      });
      expect(again.body).toMatchObject({ created: 0, updated: 1 });
      const [contact] = (await call('GET', '/api/v1/contacts?email=dup@example.com')).body.items;
      expect(contact).toMatchObject({
        email: 'dup@example.com',
        name: 'Dup',
        attributes: { city: 'Lyon' },
        tags: ['a', 'b', 'c'],
      });
    });

    it('imports CSV with quotes, tags and attributes', async () => {
      const csv =
        'email,name,tags,plan\r\n"csv1@example.com","Doe, Jane",vip;csv,gold\ncsv2@example.com,,csv,\n';
      const response = await call('POST', '/api/v1/contacts/import', {
        raw: csv,
        headers: { 'content-type': 'text/csv' },
      });
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({ rows: 2, created: 2 });
      const items = (await call('GET', '/api/v1/contacts?tag=csv')).body.items;
      expect(items.find((c: { email: string }) => c.email === 'csv1@example.com')).toMatchObject({
        name: 'Doe, Jane',
        tags: ['vip', 'csv'],
        attributes: { plan: 'gold' },
      });
      expect(
        (
          await call('POST', '/api/v1/contacts/import', {
            raw: 'name\nx',
            headers: { 'content-type': 'text/csv' },
          })
        ).status,
      ).toBe(400);
      expect(
        (
          await call('POST', '/api/v1/contacts/import', {
            raw: 'email\n"open',
            headers: { 'content-type': 'text/csv' },
          })
        ).status,
      ).toBe(400);
    });

    it('stores SQL-looking and unicode input literally', async () => {
      const name = "Robert'); DROP TABLE contacts;-- 测试 🚀 ñ";
      await call('POST', '/api/v1/contacts', {
        body: {
          contacts: [
            { email: 'bobby@example.com', name, attributes: { note: "' OR 1=1 --" }, tags: ["x' OR '1'='1"] },
          ],
        },
      });
      const [contact] = (await call('GET', '/api/v1/contacts?email=bobby@example.com')).body.items;
      expect(contact.name).toBe(name);
      expect(contact.attributes.note).toBe("' OR 1=1 --");
      expect(
        (await call('GET', `/api/v1/contacts?tag=${encodeURIComponent("x' OR '1'='1")}`)).body.items,
      ).toHaveLength(1);
      expect((await db.query('SELECT count(*)::int AS n FROM contacts')).rows[0].n).toBeGreaterThan(0);
    });

    it('rejects invalid addresses with the failing index', async () => {
      const response = await call('POST', '/api/v1/contacts', {
        body: { contacts: [{ email: 'ok@example.com' }, { email: 'not-an-address' }] },
      });
      expect(response.status).toBe(400);
      expect(response.body.error.fields).toEqual([
        { field: 'contacts.1.email', message: 'not a valid email address' },
      ]);
    });
  });

  describe('hostile and malformed input', () => {
    it('answers 413 to an oversized body and 400 to malformed JSON', async () => {
      const huge = await call('POST', '/api/v1/contacts', {
        raw: JSON.stringify({ contacts: [{ email: 'a@b.co', name: 'x'.repeat(2_000_000) }] }),
        headers: { 'content-type': 'application/json' },
      });
      expect(huge.status).toBe(413);
      expect(huge.body.error.code).toBe('PAYLOAD_TOO_LARGE');
      const broken = await call('POST', '/api/v1/contacts', {
        raw: '{"contacts": [',
        headers: { 'content-type': 'application/json' },
      });
      expect(broken.status).toBe(400);
    });

    it('rejects wrong types, unknown fields and deep nesting without a 500', async () => {
      let deep: unknown = 'x';
      for (let i = 0; i < 2_000; i += 1) deep = { a: deep };
      for (const body of [
        [],
        'text',
        42,
        null,
        { contacts: 'no' },
        { contacts: [{ email: 'a@b.co', extra: 1 }] },
        { contacts: [{ email: 'a@b.co', attributes: deep }] },
      ]) {
        const response = await call('POST', '/api/v1/contacts', { body });
        expect(response.status).toBe(400);
      }
      expect((await call('GET', '/api/v1/tasks/not-a-uuid')).status).toBe(404);
      expect((await call('GET', "/api/v1/tasks?status=sending'--")).status).toBe(400);
    });
  });

  describe('templates and tasks', () => {
    it('creates a task from a template, counts it exactly, pauses, resumes and cancels it', async () => {
      const service = await call('POST', '/api/v1/services', { body: sandboxService('s1') });
      const template = await call('POST', '/api/v1/templates', {
        body: { name: 'welcome', subject: 'Hello {{name}}', html: '<p>Hi {{name}}</p>' },
      });
      expect(template.status).toBe(201);
      await call('POST', '/api/v1/contacts', {
        body: {
          contacts: [1, 2, 3, 4].map((i) => ({ email: `t${i}@example.com`, name: `T${i}`, tags: ['tpl'] })),
        },
      });
      // A suppressed contact is skipped, not sent.
      await db.query(`UPDATE contacts SET status = 'unsubscribed' WHERE email = 't4@example.com'`);
      const task = await call('POST', '/api/v1/tasks', {
        body: {
          name: 'welcome run',
          templateId: template.body.id,
          recipients: { tags: ['tpl'], emails: ['new-recipient@example.com'] },
          serviceIds: [service.body.id],
        },
      });
      expect(task.status).toBe(201);
      expect(task.body.counts).toEqual({ total: 5, pending: 4, skipped: 1 });
      const got = await call('GET', `/api/v1/tasks/${task.body.id}`);
      expect(got.body).toMatchObject({
        status: 'sending',
        subject: 'Hello {{name}}',
        serviceIds: [service.body.id],
      });
      expect(got.body.counts).toMatchObject({ total: 5, pending: 4, skipped: 1, sent: 0 });
      const subTasks = await call('GET', `/api/v1/tasks/${task.body.id}/subtasks?status=pending&limit=2`);
      expect(subTasks.body.items).toHaveLength(2);
      expect(subTasks.body.nextCursor).toBeTruthy();

      expect((await call('POST', `/api/v1/tasks/${task.body.id}/pause`)).body.status).toBe('paused');
      expect((await call('POST', `/api/v1/tasks/${task.body.id}/pause`)).status).toBe(409);
      expect((await call('POST', `/api/v1/tasks/${task.body.id}/resume`)).body.status).toBe('sending');
      const cancelled = await call('POST', `/api/v1/tasks/${task.body.id}/cancel`);
      expect(cancelled.body.status).toBe('cancelled');
      expect(cancelled.body.counts).toMatchObject({ pending: 0, cancelled: 4, skipped: 1 });
      const timeline = await call('GET', `/api/v1/tasks/${task.body.id}/events`);
      expect(timeline.body.items.map((e: { type: string }) => e.type)).toEqual([
        'TaskCreated',
        'SubTasksMaterialised',
        'TaskPaused',
        'TaskResumed',
        'TaskCancelled',
      ]);
    });

    it('refuses (413) a task whose recorded event would be too large for the bus, and the relay goes on publishing', async () => {
      const big = 'x'.repeat(500_000);
      const template = await call('POST', '/api/v1/templates', {
        body: { name: 'heavy', subject: 'Heavy', html: `<p>${big}</p>` },
      });
      expect(template.status).toBe(201);
      expect(
        (await call('PATCH', `/api/v1/templates/${template.body.id}`, { body: { text: big } })).status,
      ).toBe(200);
      const eventsBefore = (await db.query(`SELECT count(*)::int AS n FROM events`)).rows[0].n;
      const heavy = await call('POST', '/api/v1/tasks', {
        body: {
          name: 'heavy run',
          templateId: template.body.id,
          recipients: { emails: ['heavy@example.com'] },
        },
      });
      expect(heavy.status).toBe(413);
      expect(heavy.body.error).toMatchObject({
        code: 'PAYLOAD_TOO_LARGE',
        message: expect.stringContaining('TaskCreated'),
      });
      expect((await db.query(`SELECT count(*)::int AS n FROM events`)).rows[0].n).toBe(eventsBefore);
      // What comes next is recorded and published: the relay's checkpoint passes it.
      const light = await call('POST', '/api/v1/tasks', {
        body: {
          name: 'light run',
          subject: 'Light',
          text: 'hello',
          recipients: { emails: ['light@example.com'] },
        },
      });
      expect(light.status).toBe(201);
      const last = (await db.query(`SELECT max(global_position)::bigint AS p FROM events`)).rows[0].p;
      const deadline = Date.now() + 15_000;
      let checkpoint = 0n;
      while (Date.now() < deadline) {
        checkpoint = BigInt(
          (await db.query(`SELECT max(position) AS p FROM relay_checkpoints`)).rows[0].p ?? 0,
        );
        if (checkpoint >= BigInt(last)) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(checkpoint >= BigInt(last)).toBe(true);
    });

    it('creates concurrent tasks to the same new addresses, each once, with one contact per address', async () => {
      const emails = ['race-1@example.com', 'race-2@example.com', 'race-3@example.com'];
      const answers = await Promise.all(
        Array.from({ length: 4 }, (_, i) =>
          call('POST', '/api/v1/tasks', {
            body: { name: `race ${i}`, subject: 'Race', text: 'hi', recipients: { emails } },
          }),
        ),
      );
      expect(answers.map((a) => a.status)).toEqual([201, 201, 201, 201]);
      for (const answer of answers) expect(answer.body.counts).toMatchObject({ total: 3, pending: 3 });
      const contacts = await db.query(
        `SELECT email, count(*)::int AS n FROM contacts WHERE email = ANY($1::text[]) GROUP BY email ORDER BY email`,
        [emails],
      );
      expect(contacts.rows).toEqual(emails.map((email) => ({ email, n: 1 })));
    });

    it('returns the first answer to a retried Idempotency-Key and refuses a different body under it', async () => {
      await call('POST', '/api/v1/contacts', {
        body: { contacts: [{ email: 'idem@example.com', tags: ['idem'] }] },
      });
      const body = { name: 'idem', subject: 's', text: 't', recipients: { tags: ['idem'] } };
      const headers = { 'idempotency-key': 'retry-me-1' };
      const answers = await Promise.all(
        [1, 2, 3].map(() => call('POST', '/api/v1/tasks', { body, headers })),
      );
      const ids = new Set(answers.map((a) => a.body.id));
      expect(ids.size).toBe(1);
      expect(answers.map((a) => a.status).sort()).toEqual([200, 200, 201]);
      expect((await db.query(`SELECT count(*)::int AS n FROM tasks WHERE name = 'idem'`)).rows[0].n).toBe(1);
      const conflict = await call('POST', '/api/v1/tasks', { body: { ...body, name: 'other' }, headers });
      expect(conflict.status).toBe(422);
    });

    it('refuses a task with no matching recipient or an unknown service', async () => {
      expect(
        (
          await call('POST', '/api/v1/tasks', {
            body: { name: 'x', subject: 's', text: 't', recipients: { tags: ['nobody-has-this'] } },
          })
        ).status,
      ).toBe(400);
      const unknown = await call('POST', '/api/v1/tasks', {
        body: {
          name: 'x',
          subject: 's',
          text: 't',
          recipients: { tags: ['idem'] },
          serviceIds: ['00000000-0000-7000-8000-000000000000'],
        },
      });
      expect(unknown.status).toBe(400);
      expect(unknown.body.error.fields[0].field).toBe('serviceIds.0');
    });

    it('creates a 100,000-recipient task in one transaction and counts it exactly', async () => {
      for (let batch = 0; batch < 10; batch += 1) {
        const contacts = Array.from({ length: 10_000 }, (_, i) => ({
          email: `bulk${batch * 10_000 + i}@example.com`,
          tags: ['bulk'],
        }));
        const response = await call('POST', '/api/v1/contacts', { body: { contacts } });
        expect(response.body.created).toBe(10_000);
      }
      const task = await call('POST', '/api/v1/tasks', {
        body: { name: 'bulk', subject: 's', text: 't', recipients: { tags: ['bulk'] } },
      });
      expect(task.status).toBe(201);
      expect(task.body.counts).toEqual({ total: 100_000, pending: 100_000, skipped: 0 });
      const got = await call('GET', `/api/v1/tasks/${task.body.id}`);
      expect(got.body.counts).toMatchObject({ total: 100_000, pending: 100_000 });
      const rows = await db.query(
        `SELECT count(*)::int AS n, count(DISTINCT tracking_id)::int AS tracking FROM sub_tasks WHERE task_id = $1`,
        [task.body.id],
      );
      expect(rows.rows[0]).toEqual({ n: 100_000, tracking: 100_000 });
    }, 120_000);
  });

  it('serves the OpenAPI document and the health and metrics endpoints', async () => {
    const docs = await fetch(`${api.url}/api/docs-json`);
    expect(docs.status).toBe(200);
    const doc = (await docs.json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/api/v1/tasks', '/api/v1/services/{id}/freeze']),
    );
    expect((await fetch(`${api.url}/health/live`)).status).toBe(200);
    const metrics = await (await fetch(`${api.url}/metrics`)).text();
    expect(metrics).toMatch(/edm_relay_active/);
  });
});
