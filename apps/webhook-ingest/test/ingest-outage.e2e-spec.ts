import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import {
  createTestEnvironment,
  eventually,
  PrivatePostgres,
  ServiceProcess,
  startPrivatePostgres,
  startService,
  TestEnvironment,
} from '@edm/testing';

interface Answer {
  sender: number;
  eventId: string;
  body: string;
  sentAt: number;
  answeredAt: number;
  /** The HTTP status, or `error: ...` when no HTTP answer came (connection-level failure). */
  status: number | string;
  id?: string;
}

interface HealthProbe {
  at: number;
  answeredAt: number;
  live: number | string;
  ready: number | string;
}

const SENDERS = 4;
const BURST_BEFORE_MS = 1_000;
const OUTAGE_MS = 3_000;
const RECOVERY_LIMIT_MS = 30_000;
const BURST_AFTER_RECOVERY_MS = 1_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const describeFailure = (error: unknown) => {
  const e = error as Error & { cause?: { code?: string; message?: string } };
  return `error: ${e?.name ?? 'Error'}: ${e?.message ?? String(error)}${
    e?.cause ? ` (${e.cause.code ?? e.cause.message})` : ''
  }`;
};
const statusOf = async (url: string): Promise<number | string> => {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    await response.arrayBuffer();
    return response.status;
  } catch (error) {
    return describeFailure(error);
  }
};

/**
 * Postgres goes away in the middle of a webhook burst and comes back: webhook-ingest answers 503
 * (never a 2xx it did not store, never anything else), stays alive, and recovers by itself.
 */
describe('webhook-ingest through a Postgres outage (e2e)', () => {
  let env: TestEnvironment;
  let pg: PrivatePostgres;
  let api: ServiceProcess;
  let ingest: ServiceProcess;
  let db: Client;
  let databaseUrl: string;
  let serviceId: string;
  let ingestExit: { code: number | null; signal: NodeJS.Signals | null; at: number } | undefined;
  let testFinished = false;

  beforeAll(async () => {
    pg = await startPrivatePostgres();
    env = await createTestEnvironment('ingest-outage');
    const url = new URL(pg.url);
    url.pathname = '/edm_outage';
    databaseUrl = url.toString();
    const serviceEnv = { ...env.env, DATABASE_URL: databaseUrl, DATABASE_CREATE: 'true' };
    api = await startService('api', serviceEnv);
    ingest = await startService('webhook-ingest', serviceEnv);
    ingest.process.once('exit', (code, signal) => {
      if (!testFinished) ingestExit = { code, signal, at: Date.now() };
    });
    const key = readFileSync(join(env.home, 'admin-key'), 'utf8').trim();
    const response = await fetch(`${api.url}/api/v1/services`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        name: `outage-${randomUUID()}`,
        provider: 'sandbox',
        from: { email: 'news@example.com' },
        pace: { intervalMs: 0 },
        credentials: {},
        options: {},
      }),
    });
    const json = (await response.json()) as { id?: string };
    if (response.status !== 201 && response.status !== 200)
      throw new Error(`POST /api/v1/services: ${response.status} ${JSON.stringify(json)}`);
    serviceId = json.id as string;
    db = new Client({ connectionString: databaseUrl });
    db.on('error', () => undefined);
  }, 120_000);

  afterAll(async () => {
    testFinished = true;
    const codes: Record<string, number | null | string> = {};
    const stop = async (name: string, service?: ServiceProcess) => {
      if (!service) return;
      // A process that died during the test was reported by the test itself.
      const alreadyExited = service.process.exitCode !== null || service.process.signalCode !== null;
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([
        service.stop(),
        new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 30_000))),
      ]);
      clearTimeout(timer);
      if (code === 'timeout') await service.kill();
      if (alreadyExited) return;
      codes[name] = code;
      if (code !== 0)
        process.stderr.write(
          `${name} exited with ${code}; output (tail):\n${service.output().split('\n').slice(-150).join('\n')}\n`,
        );
    };
    try {
      await db?.end().catch(() => undefined);
      await stop('webhook-ingest', ingest);
      await stop('api', api);
    } finally {
      const destroyed = await pg?.destroy().then(
        () => undefined,
        (error: unknown) => String(error),
      );
      await env?.dispose();
      expect(destroyed).toBeUndefined();
    }
    // Both went through the outage; both must still shut down cleanly.
    expect(codes).toEqual(Object.fromEntries(Object.keys(codes).map((name) => [name, 0])));
  }, 120_000);

  /** Fails at once, with the crash from its output, if webhook-ingest is no longer running. */
  const assertIngestRunning = () => {
    if (!ingestExit) return;
    const output = ingest.output();
    const crash = output.indexOf("Unhandled 'error' event");
    const excerpt = (crash >= 0 ? output.slice(crash) : output.slice(-1_500))
      .split('\n')
      .slice(0, 12)
      .join('\n');
    throw new Error(
      `webhook-ingest exited (code ${ingestExit.code}, signal ${ingestExit.signal}) during the burst:\n${excerpt}`,
    );
  };

  /** What the suite saw and what the ingest process and the database were doing, for a failure. */
  const diagnose = async (seen: {
    t0: number;
    stopBegin: number;
    stopDone: number;
    startBegin: number;
    startDone: number;
    answers: Answer[];
    health: HealthProbe[];
    inFlight: Set<Answer>;
  }) => {
    const { t0, answers } = seen;
    const rel = (t: number) => (t ? t - t0 : null);
    const tally = (list: Answer[]) =>
      list.reduce<Record<string, number>>((acc, a) => {
        acc[String(a.status)] = (acc[String(a.status)] ?? 0) + 1;
        return acc;
      }, {});
    let activity: unknown;
    const client = new Client({ connectionString: pg.url, connectionTimeoutMillis: 2_000 });
    try {
      await client.connect();
      activity = (
        await client.query(
          `SELECT pid, application_name, state, wait_event_type, wait_event, left(query, 120) AS query,
                  now() - state_change AS for
             FROM pg_stat_activity WHERE datname = 'edm_outage'`,
        )
      ).rows;
    } catch (error) {
      activity = String(error);
    } finally {
      await client.end().catch(() => undefined);
    }
    process.stderr.write(
      `ingest-outage diagnosis ${JSON.stringify(
        {
          timelineMs: {
            stopBegin: rel(seen.stopBegin),
            stopDone: rel(seen.stopDone),
            startBegin: rel(seen.startBegin),
            startDone: rel(seen.startDone),
            now: rel(Date.now()),
          },
          answersAfterStart: tally(answers.filter((a) => seen.startDone && a.sentAt >= seen.startDone)),
          lastAnswers: answers.slice(-8).map((a) => ({
            sentAt: rel(a.sentAt),
            answeredAt: rel(a.answeredAt),
            status: a.status,
          })),
          inFlight: [...seen.inFlight].map((a) => ({ sender: a.sender, sentAt: rel(a.sentAt) })),
          healthAfterStart: seen.health
            .filter((h) => seen.startDone && h.at >= seen.startDone)
            .slice(-5)
            .map((h) => ({ at: rel(h.at), live: h.live, ready: h.ready })),
          ingestAlive: ingest.process.exitCode === null && ingest.process.signalCode === null,
          postgresActivity: activity,
        },
        null,
        2,
      )}\nwebhook-ingest output (tail):\n${ingest.output().split('\n').slice(-150).join('\n')}\n`,
    );
  };

  it('answers 503 while Postgres is down, never a 2xx it did not store, and recovers without a restart', async () => {
    const target = `${ingest.url}/api/webhooks/sandbox/${serviceId}`;
    const answers: Answer[] = [];
    const health: HealthProbe[] = [];
    const inFlight = new Set<Answer>();
    let burst = true;

    const sender = async (n: number) => {
      for (let i = 0; burst; i++) {
        const eventId = `outage-${n}-${i}-${randomUUID()}`;
        const body = JSON.stringify({
          events: [{ eventId, type: 'delivered', email: 'x@example.com', timestamp: Date.now() }],
        });
        const sentAt = Date.now();
        const answer: Answer = { sender: n, eventId, body, sentAt, answeredAt: 0, status: 0 };
        inFlight.add(answer);
        try {
          const response = await fetch(target, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body,
            signal: AbortSignal.timeout(15_000),
          });
          const text = await response.text();
          answer.status = response.status;
          if (response.status === 200) answer.id = (JSON.parse(text) as { id: string }).id;
        } catch (error) {
          answer.status = describeFailure(error);
        }
        answer.answeredAt = Date.now();
        inFlight.delete(answer);
        answers.push(answer);
        // A provider retries failures with back-off; a short pause keeps the outage log sane.
        if (answer.status !== 200) await sleep(10);
      }
    };

    // Probes /health/live and /health/ready every 100 ms from the outage to the end of the burst.
    let probing = false;
    const prober = async () => {
      while (burst) {
        if (probing) {
          const at = Date.now();
          const [live, ready] = await Promise.all([
            statusOf(`${ingest.url}/health/live`),
            statusOf(`${ingest.url}/health/ready`),
          ]);
          health.push({ at, answeredAt: Date.now(), live, ready });
        }
        await sleep(100);
      }
    };

    const t0 = Date.now();
    const senders = [...Array.from({ length: SENDERS }, (_, n) => sender(n)), prober()];
    let stopBegin = 0;
    let stopDone = 0;
    let startBegin = 0;
    let startDone = 0;
    let recoveredAt: number | undefined;
    try {
      await sleep(BURST_BEFORE_MS);
      await eventually('200s before the outage', async () => answers.some((a) => a.status === 200), 10_000);

      stopBegin = Date.now();
      probing = true;
      await pg.stop();
      stopDone = Date.now();
      await sleep(OUTAGE_MS);
      assertIngestRunning();

      startBegin = Date.now();
      await pg.start();
      startDone = Date.now();
      const recoveryDeadline = Date.now() + RECOVERY_LIMIT_MS;
      let firstAfter: Answer | undefined;
      while (!(firstAfter = answers.find((a) => a.sentAt >= startDone && a.status === 200))) {
        assertIngestRunning();
        if (Date.now() > recoveryDeadline)
          throw new Error(`no 200 within ${RECOVERY_LIMIT_MS} ms of Postgres accepting connections again`);
        await sleep(50);
      }
      recoveredAt = firstAfter.answeredAt;
      await sleep(BURST_AFTER_RECOVERY_MS);
    } catch (error) {
      await diagnose({ t0, stopBegin, stopDone, startBegin, startDone, answers, health, inFlight });
      throw error;
    } finally {
      burst = false;
      await Promise.all(senders);
    }
    const ended = Date.now();

    // The process rode it out: never exited, still live, ready again by itself.
    expect(ingestExit).toBeUndefined();
    expect(ingest.process.exitCode).toBeNull();
    expect(ingest.process.signalCode).toBeNull();
    expect(await statusOf(`${ingest.url}/health/live`)).toBe(200);
    await eventually(
      '/health/ready 200 again',
      async () => (await statusOf(`${ingest.url}/health/ready`)) === 200,
      RECOVERY_LIMIT_MS,
      100,
    );

    // Live throughout; not ready while Postgres was down; ready again once it is back.
    expect(health.filter((h) => h.live !== 200)).toEqual([]);
    const healthDown = health.filter((h) => h.at >= stopDone && h.answeredAt <= startBegin);
    expect(healthDown.length).toBeGreaterThan(0);
    expect(healthDown.filter((h) => h.ready !== 503)).toEqual([]);
    const readyAgain = health.find((h) => h.at >= startDone && h.ready === 200)?.answeredAt;

    // Only 200 and 503, in the expected places.
    const counts: Record<string, number> = {};
    for (const a of answers) counts[String(a.status)] = (counts[String(a.status)] ?? 0) + 1;
    const odd = answers.filter((a) => a.status !== 200 && a.status !== 503);
    expect(
      odd.map((a) => ({ sentAt: a.sentAt - t0, answeredAt: a.answeredAt - t0, status: a.status })),
    ).toEqual([]);
    const before = answers.filter((a) => a.answeredAt < stopBegin);
    const during = answers.filter((a) => a.sentAt >= stopDone && a.answeredAt <= startBegin);
    const after = answers.filter((a) => a.sentAt >= startDone);
    expect(before.filter((a) => a.status === 200).length).toBeGreaterThan(0);
    expect(during.filter((a) => a.status === 503).length).toBeGreaterThan(0);
    // Nothing can be stored while the server is down, so nothing may be acknowledged.
    expect(during.filter((a) => a.status === 200)).toEqual([]);
    expect(after.filter((a) => a.status === 200).length).toBeGreaterThan(0);

    // Nothing answered 200 is lost: every acknowledged id is in event_logs with the exact body sent.
    await db.connect();
    const stored = new Map<string, string>(
      (await db.query(`SELECT id, raw_body FROM event_logs WHERE source = 'sandbox'`)).rows.map(
        (r: { id: string; raw_body: string }) => [r.id, r.raw_body],
      ),
    );
    const acknowledged = answers.filter((a) => a.status === 200);
    expect(new Set(acknowledged.map((a) => a.id)).size).toBe(acknowledged.length);
    const lost = acknowledged.filter((a) => stored.get(a.id as string) !== a.body);
    expect(lost.map((a) => ({ id: a.id, eventId: a.eventId, sentAt: a.sentAt - t0 }))).toEqual([]);
    // A 503'd request may still have committed (the answer, not the row, was lost): allowed, counted.
    const storedBodies = new Set(stored.values());
    const refusedButStored = answers.filter((a) => a.status === 503 && storedBodies.has(a.body)).length;
    expect(stored.size).toBe(acknowledged.length + refusedButStored);

    const first503 = answers.filter((a) => a.status === 503).sort((a, b) => a.answeredAt - b.answeredAt)[0];
    const last503 = answers.filter((a) => a.status === 503).sort((a, b) => b.answeredAt - a.answeredAt)[0];
    process.stderr.write(
      `ingest-outage summary ${JSON.stringify(
        {
          requests: answers.length,
          counts,
          ack200: {
            before: before.filter((a) => a.status === 200).length,
            after: after.filter((a) => a.status === 200).length,
          },
          during503: during.filter((a) => a.status === 503).length,
          after503: after.filter((a) => a.status === 503).length,
          refusedButStored,
          storedRows: stored.size,
          timelineMs: {
            stopBegin: stopBegin - t0,
            stopDuration: stopDone - stopBegin,
            first503: first503 ? first503.answeredAt - t0 : null,
            startBegin: startBegin - t0,
            startDuration: startDone - startBegin,
            last503: last503 ? last503.answeredAt - t0 : null,
            first200AfterStart: recoveredAt === undefined ? null : recoveredAt - startDone,
            readyAgainAfterStart: readyAgain === undefined ? null : readyAgain - startDone,
            burstEnd: ended - t0,
          },
          maxLatencyMs: Math.max(...answers.map((a) => a.answeredAt - a.sentAt)),
          healthProbes: { total: health.length, whileDown: healthDown.length },
        },
        null,
        2,
      )}\n`,
    );
  }, 120_000);
});
