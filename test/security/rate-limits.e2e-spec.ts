import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { createTestEnvironment, ServiceProcess, startService, TestEnvironment } from '@edm/testing';

interface Hit {
  status: number;
  retryAfter: string | null;
  body: string;
}

const LIMITS = {
  WEBHOOK_RATE_LIMIT_PER_SECOND: '20',
  WEBHOOK_RATE_LIMIT_BURST: '40',
  TRACKING_RATE_LIMIT_PER_SECOND: '10',
  TRACKING_RATE_LIMIT_BURST: '20',
};

/** An address of the benchmarking range 198.18.0.0/16, apart from the TEST-NET-3 flooder below. */
const randomAddress = () => `198.18.${randomBytes(1)[0]}.${randomBytes(1)[0]}`;

/** webhook-ingest with low limits, flooded from one address and from many behind a proxy. */
describe('rate limits (e2e)', () => {
  let env: TestEnvironment;
  let ingest: ServiceProcess;
  let behindProxy: ServiceProcess;
  let db: Client;

  const webhook = (service: ServiceProcess, headers: Record<string, string> = {}) =>
    hit(service, '/api/webhooks/mail-event', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ message_id: randomBytes(8).toString('hex'), status: {} }),
    });
  const pixel = (service: ServiceProcess) => hit(service, `/t/open/${randomBytes(16).toString('hex')}.gif`);
  const hit = async (service: ServiceProcess, path: string, init: RequestInit = {}): Promise<Hit> => {
    const response = await fetch(`${service.url}${path}`, init);
    return {
      status: response.status,
      retryAfter: response.headers.get('retry-after'),
      body: await response.text(),
    };
  };
  /** `count` requests, `concurrency` at a time. */
  const flood = async (count: number, concurrency: number, send: () => Promise<Hit>) => {
    const hits: Hit[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < count) {
          next += 1;
          hits.push(await send());
        }
      }),
    );
    return hits;
  };
  const statuses = (hits: Hit[]) =>
    hits.reduce<Record<number, number>>((out, h) => ({ ...out, [h.status]: (out[h.status] ?? 0) + 1 }), {});
  const metric = async (service: ServiceProcess, limit: string) => {
    const text = await (await fetch(`${service.url}/metrics`)).text();
    const line = new RegExp(`^edm_http_rate_limited_total\\{[^}]*limit="${limit}"[^}]*\\} (\\d+)$`, 'm').exec(
      text,
    );
    return Number(line?.[1]);
  };

  beforeAll(async () => {
    env = await createTestEnvironment('ratelimit');
    ingest = await startService('webhook-ingest', { ...env.env, ...LIMITS });
    behindProxy = await startService('webhook-ingest', {
      ...env.env,
      ...LIMITS,
      HTTP_TRUST_PROXY: 'loopback',
    });
    db = new Client({ connectionString: env.databaseUrl });
    await db.connect();
  }, 60_000);

  afterAll(async () => {
    await db?.end();
    const codes = await Promise.all([ingest, behindProxy].map((p) => p?.stop()));
    expect(codes).toEqual([0, 0]);
    await env?.dispose();
  }, 60_000);

  it('answers a flood with 429 and Retry-After, never 5xx, stays ready, and serves the client again after the wait', async () => {
    const stored = async () =>
      ((await db.query(`SELECT count(*)::int AS n FROM event_logs`)).rows[0] as { n: number }).n;
    const storedBefore = await stored();
    const started = Date.now();
    const [webhooks, tracking, health] = await Promise.all([
      flood(600, 30, () => webhook(ingest)),
      flood(300, 15, () => pixel(ingest)),
      flood(100, 2, () => hit(ingest, '/health/ready')),
    ]);
    const seconds = (Date.now() - started) / 1_000;

    for (const [hits, burst, perSecond] of [
      [webhooks, 40, 20],
      [tracking, 20, 10],
    ] as const) {
      expect(Object.keys(statuses(hits)).sort()).toEqual(['200', '429']);
      const passed = hits.filter((h) => h.status === 200).length;
      expect(passed).toBeGreaterThanOrEqual(burst);
      expect(passed).toBeLessThanOrEqual(burst + Math.ceil(perSecond * seconds) + 1);
      for (const refused of hits.filter((h) => h.status === 429)) {
        expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
        expect(JSON.parse(refused.body)).toEqual({
          error: { code: 'RATE_LIMITED', message: expect.stringContaining('retry after') },
        });
      }
    }
    // Health and metrics are never limited.
    expect(statuses(health)).toEqual({ 200: 100 });
    for (let i = 0; i < 50; i += 1) expect((await fetch(`${ingest.url}/metrics`)).status).toBe(200);
    // Every request let through was stored; the refused ones were not.
    const passed = [...webhooks, ...tracking].filter((h) => h.status === 200).length;
    expect(await stored()).toBe(storedBefore + passed);
    expect(await metric(ingest, 'webhooks')).toBe(webhooks.filter((h) => h.status === 429).length);
    expect(await metric(ingest, 'tracking')).toBe(tracking.filter((h) => h.status === 429).length);

    expect(ingest.process.exitCode).toBeNull();
    expect((await hit(ingest, '/health/ready')).status).toBe(200);
    const wait = Math.max(...[...webhooks, ...tracking].map((h) => Number(h.retryAfter ?? 0)));
    await new Promise((r) => setTimeout(r, wait * 1_000));
    expect((await webhook(ingest)).status).toBe(200);
    expect((await pixel(ingest)).status).toBe(200);
    expect(ingest.output()).not.toMatch(/"level":"error"/);
  }, 60_000);

  it('counts each client behind a trusted proxy by its forwarded address, and ignores the header from anyone else', async () => {
    // Untrusted: X-Forwarded-For is the client's say-so, so forging a new address each time gains nothing.
    const forged = await flood(100, 10, () => webhook(ingest, { 'x-forwarded-for': randomAddress() }));
    expect(forged.filter((h) => h.status === 429).length).toBeGreaterThan(0);

    // Behind a trusted proxy every client has its own bucket, and one client's flood leaves the others alone.
    const flooder = '203.0.113.50';
    const flooded = await flood(100, 10, () => webhook(behindProxy, { 'x-forwarded-for': flooder }));
    expect(flooded.filter((h) => h.status === 429).length).toBeGreaterThan(0);
    const others = await flood(100, 10, () => webhook(behindProxy, { 'x-forwarded-for': randomAddress() }));
    expect(statuses(others)).toEqual({ 200: 100 });
  }, 60_000);
});
