import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, IncomingHttpHeaders, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Pool } from 'pg';
import { MailEventType, progressSubTask } from '@edm/domain';
import { SubTaskStatus, subTaskStatuses } from '@edm/events';
import {
  AppName,
  callApi,
  eventually,
  PrivateNats,
  PrivatePostgres,
  ServiceProcess,
  startPrivateNats,
  startPrivatePostgres,
  startService,
} from '@edm/testing';

const RECIPIENTS = Number(process.env.FAULTS_RECIPIENTS ?? 3_000);
const SERVICES = 3;
/** Per service: three services at this interval send about 30 mails a second together. */
const PACE_MS = 100;
const EDM = resolve(__dirname, '../../bin/edm.js');

/** Every status a sub-task can end in: all but those of work still to do or in flight. */
const FINAL = new Set<string>(
  subTaskStatuses.filter((s) => !['pending', 'allocated', 'sending'].includes(s)),
);

/** One POST the webhook proxy passed to webhook-ingest, and what ingest answered. */
interface Forwarded {
  path: string;
  body: string;
  status: number;
  eventLogId?: string;
  duplicate: boolean;
}

/**
 * The whole system as processes on a Postgres and a NATS of the suite's own, running a sandbox
 * campaign of thousands of mails with webhooks flowing back, while processes are killed, NATS and
 * Postgres are stopped and started, and every webhook arrives twice, some out of order. The checks
 * are invariants over the final state, never timings.
 */
describe('faults: kill, restart and lose nothing', () => {
  let pg: PrivatePostgres;
  let nats: PrivateNats;
  let db: Pool;
  let env: Record<string, string>;
  let home: string;
  let key: string;
  let taskId: string;
  let proxy: Server;
  const procs = new Map<string, { app: AppName; process: ServiceProcess }>();
  const forwarded: Forwarded[] = [];
  let pendingDuplicates = 0;
  let lastCallbackAt = Date.now();
  const faults: string[] = [];
  /** Mails the sandbox had accepted when each fault struck: all of them during the campaign. */
  const acceptedAtFault: number[] = [];
  const health: Record<string, { outage: string; notReady: string[]; readyAfter: string[] }> = {};
  const logs: string[] = [];

  const api = () => procs.get('api')!.process;
  const ingestPort = () => procs.get('webhook-ingest')!.process.port;
  const call = (method: string, path: string, body?: unknown) => callApi(api().url, key, method, path, body);
  const count = async (sql: string, params: unknown[] = []) =>
    Number((await db.query(sql, params)).rows[0].n);
  const accepted = () => count(`SELECT count(*)::int AS n FROM sandbox_messages`);

  const start = async (name: string, app: AppName, port?: number) => {
    const extra: Record<string, string> =
      app === 'dispatcher' ? { TRACKING_BASE_URL: `http://127.0.0.1:${ingestPort()}` } : {};
    procs.set(name, { app, process: await startService(app, { ...env, ...extra }, { port }) });
  };
  /** SIGKILL, then the same app again on the same port (its callers keep their address). */
  const killAndRestart = async (name: string) => {
    const { app, process } = procs.get(name)!;
    logs.push(process.output());
    await process.kill();
    faults.push(`kill -9 ${name} (pid ${process.process.pid})`);
    acceptedAtFault.push(await accepted());
    await sleep(1_000);
    await start(name, app, process.port);
  };
  const ready = async (name: string) =>
    (await fetch(`${procs.get(name)!.process.url}/health/ready`).catch(() => undefined))?.status === 200;
  /** Every service goes not-ready during an outage and ready after it: recorded per outage. */
  const outage = async (what: string, stop: () => Promise<void>, restart: () => Promise<void>) => {
    const names = [...procs.keys()];
    const record = (health[what] = { outage: what, notReady: [] as string[], readyAfter: [] as string[] });
    acceptedAtFault.push(await accepted());
    await stop();
    faults.push(`${what} stopped`);
    const down = new Set<string>();
    await eventually(
      `every service not ready without ${what}`,
      async () => {
        for (const name of names) if (!down.has(name) && !(await ready(name))) down.add(name);
        return down.size === names.length;
      },
      30_000,
      100,
    ).catch(() => undefined);
    record.notReady = [...down].sort();
    await sleep(6_000);
    await restart();
    faults.push(`${what} started again`);
    const up = new Set<string>();
    await eventually(
      `every service ready after ${what} came back`,
      async () => {
        for (const name of names) if (!up.has(name) && (await ready(name))) up.add(name);
        return up.size === names.length;
      },
      60_000,
      200,
    ).catch(() => undefined);
    record.readyAfter = [...up].sort();
  };
  /** Faults are placed along the campaign: each waits for its share of the mails to be accepted. */
  const whenAccepted = async (share: number) => {
    const target = Math.round(RECIPIENTS * share);
    await eventually(`${target} mails accepted`, async () => (await accepted()) >= target, 120_000, 200);
  };

  /** Sends to webhook-ingest wherever it is now; an unreachable ingest is a 503 to the caller. */
  const forward = async (
    path: string,
    body: string,
    headers: IncomingHttpHeaders,
    duplicate: boolean,
  ): Promise<{ status: number; text: string }> => {
    let result: { status: number; text: string };
    try {
      const response = await fetch(`http://127.0.0.1:${ingestPort()}${path}`, {
        method: 'POST',
        headers: { 'content-type': String(headers['content-type'] ?? 'application/json') },
        body,
        signal: AbortSignal.timeout(10_000),
      });
      result = { status: response.status, text: await response.text() };
    } catch (error) {
      result = { status: 503, text: JSON.stringify({ error: `ingest unreachable: ${String(error)}` }) };
    }
    const entry: Forwarded = { path, body, status: result.status, duplicate };
    if (result.status < 300) entry.eventLogId = (JSON.parse(result.text) as { id: string }).id;
    forwarded.push(entry);
    return result;
  };
  /** The second delivery of a webhook, 0–3 s later (one in ten 3–8 s later): after later events of the same mail. */
  const deliverAgain = (path: string, body: string, headers: IncomingHttpHeaders) => {
    pendingDuplicates += 1;
    const delay = Math.random() < 0.1 ? 3_000 + Math.random() * 5_000 : Math.random() * 3_000;
    setTimeout(async () => {
      for (let attempt = 0; attempt < 60; attempt += 1) {
        if ((await forward(path, body, headers, true)).status < 300) break;
        await sleep(1_000);
      }
      pendingDuplicates -= 1;
    }, delay);
  };

  beforeAll(async () => {
    [pg, nats] = await Promise.all([startPrivatePostgres(), startPrivateNats()]);
    home = mkdtempSync(join(tmpdir(), 'edm-faults-'));
    const databaseUrl = pg.url.replace(/\/postgres$/, '/edm_faults');
    env = {
      NODE_ENV: 'test',
      EDM_HOME: home,
      LOG_LEVEL: 'info',
      DATABASE_URL: databaseUrl,
      DATABASE_POOL_SIZE: '6',
      NATS_URL: nats.url,
      NATS_STREAM: 'EDM_FAULTS',
      NATS_SUBJECT_PREFIX: 'faults',
      EDM_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      HEALTH_CHECK_TIMEOUT_MS: '1000',
      RELAY_POLL_INTERVAL_MS: '200',
      DISPATCH_LEASE_MS: '4000',
      DISPATCH_POLL_INTERVAL_MS: '250',
      DISPATCH_REAPER_INTERVAL_MS: '500',
      DISPATCH_RETRY_BASE_MS: '200',
      DISPATCH_RETRY_MAX_MS: '2000',
      DISPATCH_MAX_ATTEMPTS: '50',
      INGEST_POLL_INTERVAL_MS: '200',
      MONITOR_INTERVAL_MS: '1000',
      MONITOR_RELAY_LAG_EVENTS: '50',
    };
    proxy = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (c: Buffer) => chunks.push(c));
      request.on('end', () => {
        lastCallbackAt = Date.now();
        const body = Buffer.concat(chunks).toString('utf8');
        void forward(request.url ?? '/', body, request.headers, false).then((answer) => {
          response.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.text);
          if (answer.status < 300) deliverAgain(request.url ?? '/', body, request.headers);
        });
      });
    });
    await new Promise<void>((ok) => proxy.listen(0, '127.0.0.1', () => ok()));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;

    await start('api', 'api');
    await start('webhook-ingest', 'webhook-ingest');
    await start('monitor', 'monitor');
    await start('dispatcher-1', 'dispatcher');
    await start('dispatcher-2', 'dispatcher');
    key = readFileSync(join(home, 'admin-key'), 'utf8').trim();
    db = new Pool({ connectionString: databaseUrl, max: 3 });
    db.on('error', () => undefined);

    const serviceIds: string[] = [];
    for (let i = 0; i < SERVICES; i += 1) {
      const id = (
        await call('POST', '/api/v1/services', {
          name: `sandbox-${i + 1}`,
          provider: 'sandbox',
          from: { email: 'news@example.com' },
          pace: { intervalMs: PACE_MS },
        })
      ).id as string;
      await call('PATCH', `/api/v1/services/${id}`, {
        options: {
          latencyMs: 5,
          callbackUrl: `${proxyUrl}/api/webhooks/sandbox/${id}`,
          callbackDelayMs: 300,
          callbacks: { delivered: 0.95, open: 0.5, click: 0.2, hard_bounce: 0.03, complaint: 0.01 },
        },
      });
      serviceIds.push(id);
    }
    for (let from = 0; from < RECIPIENTS; from += 1_000) {
      await call('POST', '/api/v1/contacts', {
        contacts: Array.from({ length: Math.min(1_000, RECIPIENTS - from) }, (_, i) => ({
          email: `r${from + i}@example.com`,
          name: `Recipient ${from + i}`,
          tags: ['faults'],
        })),
      });
    }
    taskId = (
      await call('POST', '/api/v1/tasks', {
        name: 'faults campaign',
        subject: 'Hello {{name}}',
        text: 'Hi {{name}}',
        html: '<p>Hi {{name}}, <a href="https://example.com/offer">offer</a></p>',
        recipients: { tags: ['faults'] },
        serviceIds,
      })
    ).id as string;

    // The faults, one after another, while the campaign runs.
    await whenAccepted(0.08);
    await killAndRestart('dispatcher-1');
    await whenAccepted(0.16);
    await killAndRestart('webhook-ingest');
    await whenAccepted(0.24);
    const relayHolder = await eventually(
      'the active relay',
      async () => {
        for (const [name, { process }] of procs) {
          const metrics = await (await fetch(`${process.url}/metrics`)).text();
          if (/^edm_relay_active\{[^}]*\} 1$/m.test(metrics)) return name;
        }
        return undefined;
      },
      20_000,
      200,
    );
    await killAndRestart(relayHolder);
    faults.push(`(that was the process holding the relay: ${relayHolder})`);
    await whenAccepted(0.32);
    await outage(
      'NATS',
      () => nats.stop(),
      async () => {
        await eventually(
          'relay-lag raised while the bus is down',
          async () =>
            (await count(
              `SELECT count(*)::int AS n FROM alerts WHERE kind = 'relay-lag' AND status = 'firing'`,
            )) > 0,
          30_000,
          200,
        ).catch(() => undefined);
        await nats.start();
      },
    );
    await whenAccepted(0.5);
    await outage(
      'Postgres',
      () => pg.stop(),
      () => pg.start(),
    );

    // The campaign ends, the callbacks and their second deliveries settle, every queue drains.
    await eventually(
      'every sub-task final',
      async () =>
        (await count(
          `SELECT count(*)::int AS n FROM sub_tasks WHERE task_id = $1 AND status IN ('pending', 'allocated', 'sending')`,
          [taskId],
        )) === 0,
      300_000,
      500,
    );
    await eventually(
      'webhooks settled',
      async () => pendingDuplicates === 0 && Date.now() - lastCallbackAt > 20_000,
      180_000,
      500,
    );
    await eventually(
      'ingest drained',
      async () =>
        (await count(
          `SELECT (SELECT count(*) FROM event_logs WHERE status = 'received') + (SELECT count(*) FROM mail_events WHERE match_status = 'pending') AS n`,
        )) === 0,
      180_000,
      500,
    );
    await eventually(
      'relay caught up',
      async () =>
        (await count(
          `SELECT (SELECT coalesce(max(global_position), 0) FROM events) - (SELECT coalesce(max(position), 0) FROM relay_checkpoints) AS n`,
        )) === 0,
      60_000,
      500,
    );
  }, 900_000);

  afterAll(async () => {
    for (const { process } of procs.values()) logs.push(process.output());
    await Promise.all([...procs.values()].map(({ process }) => process.stop()));
    await db?.end().catch(() => undefined);
    await new Promise<void>((ok) => (proxy ? proxy.close(() => ok()) : ok()));
    await Promise.all([pg?.destroy(), nats?.destroy()]);
    if (home) rmSync(home, { recursive: true, force: true });
  }, 120_000);

  it('injected every fault', () => {
    expect(faults).toEqual([
      expect.stringMatching(/^kill -9 dispatcher-1/),
      expect.stringMatching(/^kill -9 webhook-ingest/),
      expect.stringMatching(/^kill -9 /),
      expect.stringMatching(/^\(that was the process holding the relay/),
      'NATS stopped',
      'NATS started again',
      'Postgres stopped',
      'Postgres started again',
    ]);
    process.stdout.write(
      `faults injected:\n  ${faults.join('\n  ')}\nmails accepted when each struck: ${acceptedAtFault.join(', ')} of ${RECIPIENTS}\n`,
    );
    expect(acceptedAtFault.filter((n) => !(n < RECIPIENTS))).toEqual([]);
  });

  it('leaves every sub-task in a final state', async () => {
    const { rows } = await db.query(
      `SELECT status, count(*)::int AS n FROM sub_tasks WHERE task_id = $1 GROUP BY status ORDER BY status`,
      [taskId],
    );
    process.stdout.write(`sub-tasks by status: ${JSON.stringify(rows)}\n`);
    expect(rows.reduce((sum: number, r: { n: number }) => sum + r.n, 0)).toBe(RECIPIENTS);
    expect(rows.filter((r: { status: string }) => !FINAL.has(r.status))).toEqual([]);
    expect((await call('GET', `/api/v1/tasks/${taskId}`)).status).toBe('completed');
  });

  it('sent no recipient twice: the sandbox accepted each sent sub-task exactly once', async () => {
    const { rows } = await db.query(
      `SELECT count(*)::int AS messages, count(DISTINCT recipient)::int AS recipients,
              count(*) FILTER (WHERE accepts > 1)::int AS resent_and_deduplicated
         FROM sandbox_messages`,
    );
    process.stdout.write(`sandbox mailbox: ${JSON.stringify(rows[0])}\n`);
    expect(rows[0].messages).toBe(rows[0].recipients);
    const sentWithoutMail = await count(
      `SELECT count(*)::int AS n FROM sub_tasks s LEFT JOIN sandbox_messages m ON m.idempotency_key = s.id::text
        WHERE s.task_id = $1 AND s.status NOT IN ('failed', 'unknown', 'skipped', 'cancelled') AND m.idempotency_key IS NULL`,
      [taskId],
    );
    expect(sentWithoutMail).toBe(0);
    const mailWithoutSent = await count(
      `SELECT count(*)::int AS n FROM sandbox_messages m JOIN sub_tasks s ON m.idempotency_key = s.id::text
        WHERE s.status IN ('pending', 'allocated', 'sending', 'failed', 'skipped', 'cancelled')`,
    );
    expect(mailWithoutSent).toBe(0);
  });

  it('stored every webhook answered 2xx, byte for byte, and applied it', async () => {
    const answered = forwarded.filter((f) => f.status < 300);
    const refused = forwarded.filter((f) => f.status >= 300);
    process.stdout.write(
      `webhook POSTs: ${forwarded.length} (${answered.length} answered 2xx, of them ${answered.filter((f) => f.duplicate).length} second deliveries; ${refused.length} refused during faults: ${JSON.stringify(
        refused.reduce<Record<number, number>>((m, f) => ({ ...m, [f.status]: (m[f.status] ?? 0) + 1 }), {}),
      )})\n`,
    );
    expect(answered.length).toBeGreaterThan(RECIPIENTS);
    expect(refused.every((f) => f.status === 503 || f.status === 429)).toBe(true);
    const stored = new Map<string, { raw_body: string; status: string }>();
    const ids = answered.map((f) => f.eventLogId!);
    for (let i = 0; i < ids.length; i += 5_000) {
      const { rows } = await db.query(
        `SELECT id, raw_body, status FROM event_logs WHERE id = ANY($1::uuid[])`,
        [ids.slice(i, i + 5_000)],
      );
      for (const r of rows) stored.set(r.id, r);
    }
    const lost = answered.filter((f) => stored.get(f.eventLogId!)?.raw_body !== f.body);
    expect(lost).toEqual([]);
    expect(answered.filter((f) => stored.get(f.eventLogId!)?.status !== 'processed')).toEqual([]);

    // Each provider event answered 2xx is matched to its sub-task, whose final status already
    // holds it: applying the event again would change nothing.
    const events = new Map<string, { type: string; trackingId: string }>();
    for (const f of answered)
      for (const e of (
        JSON.parse(f.body) as { events: { eventId: string; type: string; trackingId: string }[] }
      ).events)
        events.set(e.eventId, e);
    const { rows } = await db.query(
      `SELECT m.dedupe_key, m.match_status, s.tracking_id, s.status
         FROM mail_events m LEFT JOIN sub_tasks s ON s.id = m.sub_task_id WHERE m.provider = 'sandbox'`,
    );
    const byKey = new Map(rows.map((r: { dedupe_key: string }) => [r.dedupe_key, r]));
    const wrong: unknown[] = [];
    for (const [eventId, e] of events) {
      const row = byKey.get(`sandbox:id:${encodeURIComponent(eventId)}`) as
        { match_status: string; tracking_id: string; status: string } | undefined;
      if (
        !row ||
        row.match_status !== 'matched' ||
        row.tracking_id !== e.trackingId ||
        progressSubTask(row.status as SubTaskStatus, e.type as MailEventType) !== null
      )
        wrong.push({ eventId, ...e, row });
    }
    expect({ wrong: wrong.length, examples: wrong.slice(0, 3) }).toEqual({ wrong: 0, examples: [] });
    expect(rows).toHaveLength(events.size);
    process.stdout.write(`provider events: ${events.size} distinct, every one matched and applied\n`);
  });

  it("suppressed the contact of every bounce and complaint, and no one else's", async () => {
    const { rows } = await db.query(
      `SELECT s.status AS mail, c.status AS contact, count(*)::int AS n
         FROM sub_tasks s JOIN contacts c ON c.id = s.contact_id WHERE s.task_id = $1 GROUP BY 1, 2 ORDER BY 1, 2`,
      [taskId],
    );
    const expected: Record<string, string> = { bounced: 'bounced', complained: 'complained' };
    const wrong = (rows as { mail: string; contact: string; n: number }[]).filter(
      (r) => r.contact !== (expected[r.mail] ?? 'active'),
    );
    expect(wrong).toEqual([]);
  });

  it('published every event in Postgres to the stream exactly once', async () => {
    const inPostgres = new Set<string>(
      (await db.query(`SELECT id FROM events`)).rows.map((r: { id: string }) => r.id),
    );
    const nc = await connect({ servers: nats.url });
    try {
      const consumer = await jetstream(nc).consumers.get('EDM_FAULTS');
      const seen = new Map<string, number>();
      const messages = await consumer.consume();
      for await (const m of messages) {
        const id = (m.json() as { id: string }).id;
        seen.set(id, (seen.get(id) ?? 0) + 1);
        if (m.info.pending === 0) break;
      }
      const twice = [...seen].filter(([, n]) => n > 1);
      const missing = [...inPostgres].filter((id) => !seen.has(id));
      const foreign = [...seen.keys()].filter((id) => !inPostgres.has(id));
      process.stdout.write(`events: ${inPostgres.size} in Postgres, ${seen.size} distinct in the stream\n`);
      expect({ twice: twice.length, missing: missing.length, foreign: foreign.length }).toEqual({
        twice: 0,
        missing: 0,
        foreign: 0,
      });
    } finally {
      await nc.close();
    }
  });

  it("keeps the task's counters equal to the counts of its sub-tasks", async () => {
    const task = (await call('GET', `/api/v1/tasks/${taskId}`)) as {
      total: number;
      counts: Record<string, number>;
    };
    const { rows } = await db.query(
      `SELECT status, count(*)::int AS n FROM sub_tasks WHERE task_id = $1 GROUP BY status`,
      [taskId],
    );
    expect(task.total).toBe(RECIPIENTS);
    expect(task.counts.total).toBe(RECIPIENTS);
    for (const r of rows as { status: string; n: number }[]) {
      if (['sent', 'delivered', 'opened'].includes(r.status)) continue;
      expect({ status: r.status, n: task.counts[r.status] }).toEqual({ status: r.status, n: r.n });
    }
    const neverSent = ['pending', 'allocated', 'sending', 'failed', 'unknown', 'skipped', 'cancelled'];
    const sentOrLater = (rows as { status: string; n: number }[])
      .filter((r) => !neverSent.includes(r.status))
      .reduce((sum, r) => sum + r.n, 0);
    expect(task.counts.sent).toBe(sentOrLater);
  });

  it('rebuilds read models from the events equal to the live ones', async () => {
    const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((ok) => {
      const child = spawn(process.execPath, [EDM, 'replay', '--dry-run', '--json'], {
        env: { PATH: process.env.PATH ?? '', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      child.once('close', (code) => ok({ code, stdout, stderr }));
    });
    const report = JSON.parse(run.stdout) as {
      matched: boolean;
      events: number;
      tables: { table: string; matched: boolean }[];
    };
    expect(report.tables.filter((t) => !t.matched)).toEqual([]);
    expect({ code: run.code, stderr: run.stderr, matched: report.matched }).toEqual({
      code: 0,
      stderr: '',
      matched: true,
    });
    process.stdout.write(`replay: ${report.events} events rebuilt, every read model matched\n`);
  });

  it('went not-ready during each outage and ready after it', () => {
    const everyone = [...procs.keys()].sort();
    expect(health.NATS).toEqual({ outage: 'NATS', notReady: everyone, readyAfter: everyone });
    expect(health.Postgres).toEqual({ outage: 'Postgres', notReady: everyone, readyAfter: everyone });
  });

  it("counted the dispatchers' service loops that crashed on the outages and restarted themselves", async () => {
    let restarts = 0;
    for (const name of ['dispatcher-1', 'dispatcher-2']) {
      const metrics = await (await fetch(`${procs.get(name)!.process.url}/metrics`)).text();
      for (const m of metrics.matchAll(/^edm_dispatch_loop_restarts_total\{[^}]*\} (\d+)$/gm))
        restarts += Number(m[1]);
    }
    process.stdout.write(`service loop restarts counted by the dispatchers: ${restarts}\n`);
    expect(restarts).toBeGreaterThan(0);
  });

  it('raised relay lag while the bus was down and resolved it once the relay caught up', async () => {
    await eventually(
      'relay-lag resolved',
      async () =>
        (await count(
          `SELECT count(*)::int AS n FROM alerts WHERE kind = 'relay-lag' AND status = 'firing'`,
        )) === 0,
      30_000,
      500,
    );
    expect(await count(`SELECT count(*)::int AS n FROM alerts WHERE kind = 'relay-lag'`)).toBeGreaterThan(0);
  });

  it('wrote no unhandled error and no secret to any log', () => {
    const all = [...logs, ...[...procs.values()].map(({ process }) => process.output())].join('\n');
    expect(all).not.toContain(key);
    expect(all).not.toContain(env.EDM_ENCRYPTION_KEY);
    expect(all).not.toMatch(/UnhandledPromiseRejection|uncaughtException/);
  });
});
