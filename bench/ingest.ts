/**
 * Bench: webhook-ingest, in one run: durable events per second (single events and SendGrid
 * batches) against two baselines, and the latency from a webhook to its sub-task moving.
 *
 * Run (after `npm run build`, with Postgres on 127.0.0.1:5432, NATS JetStream on 127.0.0.1:4222
 * and pgbench at /usr/bin/pgbench, or set PGBENCH):
 *
 *   node -r @swc-node/register bench/ingest.ts
 *
 * One load generator for every throughput figure: a worker thread in this process with
 * CONCURRENCY keep-alive TCP connections, one request in flight on each (closed loop: each
 * connection sends its next request, head and body in one write, when the previous answer has
 * been read whole by its Content-Length). Cheaper per request than `node:http`'s client, which
 * used about half a core and bounded the bare server's figure. It runs for
 * WARMUP_MS (counted apart) and then DURATION_MS. Rate = 200 answers / time from the first
 * request to the last answer; the 200s of each whole second of the window are printed beside it
 * (a slow start shows there). Every request body is distinct.
 *
 * Baselines, first, on a quiet server:
 * (a) A bare `node:http` server in a child process (written here) that reads the body and answers
 *     200 `{}`; the same EngageLab bodies, the same generator and concurrency: requests/s.
 * (b) `pgbench -N -c 8 -j 2 -T 15` on a scratch database of the same Postgres (`pgbench -i -s 10`
 *     first, not timed; the database is dropped): TPS.
 * (c) The store-first floor: a child process (written here) with `node:http` and one `pg`
 *     connection that stores each request as a row of `event_logs` (a fresh database migrated as
 *     the service's own) with group commit and named statements, and answers 200 once its row
 *     committed. No routing, checks or processing: what any store-first server must at least do,
 *     on the same Postgres, with the same bodies and generator. Check: as many rows as 200s.
 *     Shown beside the figures, not a goal: it tells how much of a miss is the machine's (its
 *     commits) and how much the service's.
 *
 * 1. Single events. A fresh test environment with only webhook-ingest (dist/, production
 *    defaults, except the per-client rate limit, which is off: all load comes from one address). EngageLab `target` events (the fixture engagelab-target.json, message_id, itime
 *    and email_ids varied per request) POSTed to the generic path /api/webhooks/mail-event.
 *    Figure: 200s per second = durable events per second (a 200 is sent only after the raw row
 *    committed). Check: `event_logs` holds exactly as many rows as 200s were answered (warm-up
 *    included). Goals: >= 3x the pgbench -N TPS (group commit), >= 0.25x the bare server.
 * 2. SendGrid batches. Another fresh environment with the API (only to create a SendGrid service,
 *    credentials `{ apiKey: 'SG.x' }`, options `{ baseUrl: 'http://127.0.0.1:9' }`; stopped before
 *    the load) and webhook-ingest. Bodies of BATCH events (the 11 events of sendgrid-batch.json
 *    in turn, sg_event_id / sg_message_id / timestamp varied) to /api/webhooks/sendgrid/<id>.
 *    Figure: events/s = BATCH x 200s per second. Same row check. No goal; shown beside (a), (b).
 * 3. Latency. A third environment with the API, webhook-ingest and one dispatcher
 *    (TRACKING_BASE_URL http://127.0.0.1:9). A sandbox service (options `{ latencyMs: 0,
 *    callbacks: { delivered: 0 } }`, pace `{ intervalMs: 0 }`), LATENCY_WARMUP + LATENCY_RECIPIENTS
 *    contacts and one task over them; the dispatcher sends them all (not timed), then is stopped
 *    and the API's relay is let drain. Then one `delivered` sandbox event per sub-task, each its
 *    own request, open loop at LATENCY_RATE/s; the first LATENCY_WARMUP (WARMUP_MS of events, as
 *    in the throughput parts) are the warm-up, counted apart. Per measured sub-task: the send
 *    time of its request on the Postgres clock (local clock + an offset measured once against
 *    `clock_timestamp()`), against
 *    (i) `events.occurred_at` of its SubTaskProgressed event: now() of the one transaction that
 *        parses the stored request, matches it and applies it, i.e. its START, so a lower bound
 *        of when the change became visible; and
 *    (ii) when a single watcher (one query every WATCH_EVERY_MS for the events past the highest
 *        position below which it has seen every position, since concurrent transactions commit
 *        out of position order; stamped with clock_timestamp()) first saw it committed: an upper
 *        bound, by at most one watch interval plus the query.
 *    No per-sub-task polling. p50 / p99 (nearest rank) / max of both. Goal: p99 < 100 ms. Shown
 *    beside, not judged: where the time goes (the raw row's insert, the answer, the provider
 *    event's insert) and the warm-up's events seen committed.
 *    Checks: every request answered 200, every sub-task `delivered`, one SubTaskProgressed each.
 *
 * Also printed: CPU used per process group during each load window (bench incl. the generator,
 * server, Postgres backends of the run's database, other Postgres, everything else), read from
 * /proc, to see what shared the cores; the intake's group commit over each throughput window,
 * from the service's own /metrics (edm_webhook_commit_batch_size: INSERT transactions and mean
 * requests per transaction; edm_webhook_store_seconds: mean time to committed); how often and how
 * long processing paused for intake, over each throughput window and over part 3
 * (edm_webhook_processing_yields_total, edm_webhook_processing_yield_seconds_total); and, after
 * each throughput window (no more intake), how far the processor had parsed the stored requests
 * and how fast it parses the rest (watched for at most CATCH_UP_MS; not a figure).
 *
 * Overrides for exploring (the documented figures use the defaults): BENCH_INGEST_DURATION_MS
 * (each throughput window, default 15000), BENCH_INGEST_RECIPIENTS (part 3, default 5000),
 * BENCH_INGEST_ONLY=latency (part 3 alone, without the throughput parts or their baselines),
 * BENCH_INGEST_ONLY=single (the three baselines and part 1 alone),
 * BENCH_INGEST_WORKERS and BENCH_INGEST_YIELD_FACTOR (webhook-ingest's INGEST_WORKERS and
 * INGEST_YIELD_FACTOR, default the service's own),
 * BENCH_INGEST_CONCURRENCY (the generator's connections, default 64, for the baseline and the
 * service alike), BENCH_NODE_OPTIONS (NODE_OPTIONS for the services this bench starts, e.g. a
 * `--require` of a profiler), BENCH_INGEST_FLOOR_WRITERS (the floor's connections, each with one
 * INSERT in flight, default 1, as the service's intake writer).
 *
 * A miss is printed, never an exit code; the exit code is 1 only when something breaks (a failed
 * request, a wrong count, a timeout) or 2 when the watchdog fires. Only 127.0.0.1 traffic; bounded
 * by a watchdog; cleans up after itself (processes, the three databases, streams and EDM_HOME
 * folders, pgbench's database, the bare server and the floor).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { Client } from 'pg';
import { createDataSource, runMigrations } from '@edm/persistence';
import { createTestEnvironment, ServiceProcess, startService, TestEnvironment } from '@edm/testing';
import {
  clockTicks,
  fmt,
  log,
  machine,
  now,
  percentile,
  printComparison,
  printTable,
  processCpu,
  processTree,
  ProcessCpu,
  runPgbench,
  waitFor,
  watchdog,
} from './bench-util';

const POSTGRES_ADMIN_URL = process.env.EDM_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const PGBENCH = process.env.PGBENCH ?? '/usr/bin/pgbench';
const FIXTURES = resolve(__dirname, '../../shared/provider-payloads');

const CONCURRENCY = Number(process.env.BENCH_INGEST_CONCURRENCY ?? 64);
if (!Number.isInteger(CONCURRENCY) || CONCURRENCY < 1 || CONCURRENCY > 4_096)
  throw new Error(
    `BENCH_INGEST_CONCURRENCY must be a whole number from 1 to 4096, not ${process.env.BENCH_INGEST_CONCURRENCY}`,
  );
const FLOOR_WRITERS = Number(process.env.BENCH_INGEST_FLOOR_WRITERS ?? 1);
if (!Number.isInteger(FLOOR_WRITERS) || FLOOR_WRITERS < 1 || FLOOR_WRITERS > 16)
  throw new Error(
    `BENCH_INGEST_FLOOR_WRITERS must be a whole number from 1 to 16, not ${process.env.BENCH_INGEST_FLOOR_WRITERS}`,
  );
const WARMUP_MS = 2_000;
const DURATION_MS = Number(process.env.BENCH_INGEST_DURATION_MS ?? 15_000);
const BATCH = 50;
const LATENCY_RECIPIENTS = Number(process.env.BENCH_INGEST_RECIPIENTS ?? 5_000);
const LATENCY_RATE = 1_000;
/** Events sent first at the same rate and counted apart, as the throughput parts' warm-up. */
const LATENCY_WARMUP = (LATENCY_RATE * WARMUP_MS) / 1_000;
const WATCH_EVERY_MS = 10;
const CATCH_UP_MS = 30_000;
const GOAL_VS_PGBENCH = 3;
const GOAL_VS_BARE = 0.25;
const GOAL_P99_MS = 100;
const TIME_LIMIT_MS = 20 * 60_000;
const REQUEST_TIMEOUT_MS = 60_000;

const problems: string[] = [];
const observations: string[] = [];
const services = new Set<ServiceProcess>();
const environments = new Set<TestEnvironment>();
const clients = new Set<Client>();
const workers = new Set<Worker>();
const pgbenchDatabases = new Set<string>();
let baselineServer: ChildProcess | undefined;
let serviceOutput = '';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const seconds = (ms: number) => `${(ms / 1_000).toFixed(1)} s`;
const ms1 = (ms: number) => `${ms.toFixed(1)} ms`;
/** Wall clock with sub-millisecond resolution, in ms since the epoch. */
const wall = () => performance.timeOrigin + performance.now();

// ---------------------------------------------------------------------------------------------
// Processes, databases and cleanup.

async function stopService(name: string, service: ServiceProcess): Promise<void> {
  services.delete(service);
  serviceOutput = service.output();
  const code = await Promise.race([
    service.stop(),
    new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 25_000)),
  ]);
  if (code === 'timeout') {
    await service.kill();
    observations.push(`${name} did not stop within 25 s of SIGTERM and was killed`);
  } else if (code !== 0) observations.push(`${name} exited with code ${code} on SIGTERM`);
}

async function connect(url: string, name: string): Promise<Client> {
  const client = new Client({ connectionString: url, application_name: name });
  await client.connect();
  clients.add(client);
  return client;
}

async function disconnect(client: Client | undefined): Promise<void> {
  if (!client) return;
  clients.delete(client);
  await client.end().catch(() => undefined);
}

/** Drops the environment's database and stream, and removes its EDM_HOME folder (keys). */
async function dispose(env: TestEnvironment): Promise<void> {
  environments.delete(env);
  await env.dispose();
  rmSync(env.home, { recursive: true, force: true });
}

async function cleanup(): Promise<void> {
  for (const worker of workers) await worker.terminate().catch(() => undefined);
  workers.clear();
  if (baselineServer && baselineServer.exitCode === null) baselineServer.kill('SIGKILL');
  baselineServer = undefined;
  for (const service of [...services]) await stopService('a service', service).catch(() => undefined);
  for (const client of [...clients]) await disconnect(client);
  for (const env of [...environments]) await dispose(env).catch(() => undefined);
  if (pgbenchDatabases.size) {
    const admin = new Client({ connectionString: POSTGRES_ADMIN_URL });
    await admin.connect();
    for (const name of pgbenchDatabases)
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => undefined);
    pgbenchDatabases.clear();
    await admin.end();
  }
}

async function newEnvironment(suite: string): Promise<TestEnvironment> {
  const env = await createTestEnvironment(suite);
  environments.add(env);
  log(`test environment ${env.id}: database ${databaseName(env)}, stream ${env.stream}`);
  return env;
}

const databaseName = (env: TestEnvironment) => new URL(env.databaseUrl).pathname.slice(1);

/** The bench measures capacity from one client address: webhook-ingest's per-client rate limit is off. */
async function start(app: 'api' | 'webhook-ingest' | 'dispatcher', env: Record<string, string>) {
  const workers = process.env.BENCH_INGEST_WORKERS;
  const yieldFactor = process.env.BENCH_INGEST_YIELD_FACTOR;
  const service = await startService(app, {
    ...env,
    WEBHOOK_RATE_LIMIT_PER_SECOND: '0',
    ...(process.env.BENCH_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS } : {}),
    ...(workers ? { INGEST_WORKERS: workers } : {}),
    ...(yieldFactor ? { INGEST_YIELD_FACTOR: yieldFactor } : {}),
  });
  services.add(service);
  log(`${app} started (pid ${service.process.pid}) at ${service.url}`);
  return service;
}

// ---------------------------------------------------------------------------------------------
// CPU per process group, from /proc, over a window.

interface CpuWindow {
  label: string;
  started: number;
  before: Map<number, ProcessCpu>;
  server?: number;
  database?: string;
}

const openCpu = (label: string, server?: number, database?: string): CpuWindow => ({
  label,
  started: now(),
  before: processCpu(),
  server,
  database,
});

function closeCpu(window: CpuWindow): string {
  const after = processCpu();
  const elapsed = (now() - window.started) / 1_000;
  const hz = clockTicks();
  const serverTree = window.server ? processTree(after, window.server) : new Set<number>();
  const groups = new Map<string, number>();
  for (const [pid, p] of after) {
    const used = p.ticks - (window.before.get(pid)?.ticks ?? 0);
    if (used <= 0) continue;
    let group = 'other';
    if (pid === process.pid) group = 'bench+generator';
    else if (serverTree.has(pid)) group = 'server';
    else if (p.command.startsWith('postgres'))
      group = window.database && p.command.includes(` ${window.database} `) ? 'pg (this db)' : 'pg (rest)';
    else if (p.command.includes('nats-server')) group = 'nats';
    groups.set(group, (groups.get(group) ?? 0) + used);
  }
  const order = ['bench+generator', 'server', 'pg (this db)', 'pg (rest)', 'nats', 'other'];
  const parts = order
    .filter((g) => groups.has(g))
    .map((g) => `${g} ${((groups.get(g)! / hz / elapsed) * 100).toFixed(0)}%`);
  const total = [...groups.values()].reduce((a, b) => a + b, 0) / hz / elapsed;
  return `${window.label}: CPU over ${elapsed.toFixed(1)} s (% of one core): ${parts.join(', ')}; total ${(total * 100).toFixed(0)}%`;
}

// ---------------------------------------------------------------------------------------------
// The load generator: a worker thread, CONCURRENCY closed loops over one keep-alive agent.

type BodyKind = 'engagelab' | 'sendgrid';

interface LoadOptions {
  url: string;
  path: string;
  headers: Record<string, string>;
  kind: BodyKind;
  template: unknown;
  /** Makes the bodies of this run distinct from every other run's. */
  tag: string;
  durationMs: number;
}

interface LoadResult {
  statuses: Record<string, number>;
  errors: Record<string, number>;
  ok: number;
  sent: number;
  elapsedMs: number;
  perSecond: number;
  p50: number;
  p99: number;
  bodyBytes: number;
  /** 200s answered in each whole second of the window (a last partial second left out). */
  bySecond: number[];
}

const GENERATOR = `
const { parentPort, workerData: w } = require('node:worker_threads');
const net = require('node:net');
const { performance } = require('node:perf_hooks');
const target = new URL(w.url);
const base = Date.now();
const tpl = w.template;
const bodies = {
  engagelab(n) {
    const id = base + '_' + w.tag + '_' + n + '.bench-inbound';
    tpl.message_id = id;
    tpl.itime = base + n;
    tpl.status.status_data.email_ids = [id + '0$' + tpl.status.status_data.tos[0]];
    return JSON.stringify(tpl);
  },
  sendgrid(n) {
    const events = [];
    for (let i = 0; i < w.batch; i += 1) {
      const e = Object.assign({}, tpl[i % tpl.length]);
      e.sg_event_id = w.tag + '-' + n + '-' + i;
      e.sg_message_id = w.tag + '-' + n + '-' + i + '.filter0001';
      e.timestamp = Math.floor(base / 1000) + n;
      events.push(e);
    }
    return JSON.stringify(events);
  },
};
const make = bodies[w.kind];
// One request = one write of its head and body; the head is the same for every request.
let head = 'POST ' + w.path + ' HTTP/1.1\\r\\nHost: ' + target.host + '\\r\\nConnection: keep-alive\\r\\n';
for (const [name, value] of Object.entries(w.headers)) head += name + ': ' + value + '\\r\\n';
head += 'Content-Length: ';
const HEAD_END = Buffer.from('\\r\\n\\r\\n');
const statuses = {};
const errors = {};
const latencies = [];
const bySecond = [];
let seq = 0;
let bodyBytes = 0;
const started = performance.now();
const end = started + w.durationMs;
let last = started;

/**
 * One closed loop on its own keep-alive connection: the next request is written when the answer
 * to the previous one has been read whole (status line, headers, Content-Length bytes of body).
 * A connection the server closes (or that fails) is replaced by a new one.
 */
function loop(done) {
  let socket;
  let buffer = Buffer.alloc(0);
  let sentAt = 0;
  let waiting = false;
  function connect() {
    buffer = Buffer.alloc(0);
    socket = net.connect({ host: target.hostname, port: Number(target.port) });
    socket.setNoDelay(true);
    socket.setTimeout(w.timeoutMs, () => socket.destroy(new Error('timeout')));
    socket.on('connect', next);
    socket.on('data', onData);
    socket.on('error', (e) => {
      if (waiting) errors[e.code || e.message] = (errors[e.code || e.message] || 0) + 1;
      waiting = false;
    });
    socket.on('close', () => {
      if (waiting) errors.closed = (errors.closed || 0) + 1;
      waiting = false;
      if (performance.now() < end) connect();
      else done();
    });
  }
  function next() {
    if (performance.now() >= end) {
      socket.end();
      return;
    }
    const n = seq++;
    const body = make(n);
    const length = Buffer.byteLength(body);
    if (n === 0) bodyBytes = length;
    sentAt = performance.now();
    waiting = true;
    socket.write(head + length + '\\r\\n\\r\\n' + body);
  }
  function onData(chunk) {
    buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
    for (;;) {
      const headEnd = buffer.indexOf(HEAD_END);
      if (headEnd < 0) return;
      const text = buffer.toString('latin1', 0, headEnd);
      const lengthMatch = /\\r\\ncontent-length: *(\\d+)/i.exec(text);
      if (!lengthMatch) {
        errors['answer without Content-Length'] = (errors['answer without Content-Length'] || 0) + 1;
        waiting = false;
        socket.destroy();
        return;
      }
      const total = headEnd + 4 + Number(lengthMatch[1]);
      if (buffer.length < total) return;
      const status = text.slice(9, 12);
      buffer = buffer.subarray(total);
      last = performance.now();
      waiting = false;
      statuses[status] = (statuses[status] || 0) + 1;
      if (status === '200') {
        latencies.push(last - sentAt);
        const second = Math.floor((last - started) / 1000);
        bySecond[second] = (bySecond[second] || 0) + 1;
      }
      if (/\\r\\nconnection: *close/i.test(text)) {
        socket.end();
        return;
      }
      next();
    }
  }
  connect();
}

Promise.all(Array.from({ length: w.concurrency }, () => new Promise(loop)))
  .then(() => {
    latencies.sort((a, b) => a - b);
    const pick = (p) => latencies.length ? latencies[Math.min(latencies.length, Math.max(1, Math.ceil(p / 100 * latencies.length))) - 1] : NaN;
    parentPort.postMessage({ statuses, errors, sent: seq, elapsedMs: last - started, p50: pick(50), p99: pick(99), bodyBytes,
      bySecond: Array.from({ length: Math.floor(w.durationMs / 1000) }, (_, i) => bySecond[i] || 0) });
  })
  .catch((e) => parentPort.postMessage({ fatal: String(e && e.stack || e) }));
`;

async function load(options: LoadOptions): Promise<LoadResult> {
  const worker = new Worker(GENERATOR, {
    eval: true,
    workerData: {
      ...options,
      concurrency: CONCURRENCY,
      batch: BATCH,
      timeoutMs: REQUEST_TIMEOUT_MS,
    },
  });
  workers.add(worker);
  try {
    const message = await new Promise<Record<string, unknown>>((ok, fail) => {
      const timer = setTimeout(
        () => fail(new Error('the load generator did not finish in time')),
        options.durationMs + REQUEST_TIMEOUT_MS + 30_000,
      );
      worker.once('message', (m: Record<string, unknown>) => {
        clearTimeout(timer);
        ok(m);
      });
      worker.once('error', (e) => {
        clearTimeout(timer);
        fail(e);
      });
    });
    if (message.fatal) throw new Error(`load generator failed: ${String(message.fatal)}`);
    const r = message as unknown as Omit<LoadResult, 'ok' | 'perSecond'>;
    const ok = r.statuses['200'] ?? 0;
    return { ...r, ok, perSecond: (ok * 1_000) / r.elapsedMs };
  } finally {
    workers.delete(worker);
    await worker.terminate();
  }
}

const describeLoad = (r: LoadResult) =>
  `${r.ok.toLocaleString('en-US')} x 200 of ${r.sent.toLocaleString('en-US')} sent in ${seconds(r.elapsedMs)} = ${fmt(r.perSecond)}` +
  ` (request p50 ${ms1(r.p50)}, p99 ${ms1(r.p99)}; body ${r.bodyBytes} B)` +
  (r.bySecond.length > 2
    ? `; 200s in each second ${r.bySecond.map((n) => n.toLocaleString('en-US')).join(' ')}`
    : '') +
  (Object.keys(r.statuses).some((s) => s !== '200') ? `; other answers ${JSON.stringify(r.statuses)}` : '') +
  (Object.keys(r.errors).length ? `; errors ${JSON.stringify(r.errors)}` : '');

/** Warm-up (counted apart), then the measured window. Returns both. */
async function warmAndLoad(
  label: string,
  options: Omit<LoadOptions, 'durationMs' | 'tag'>,
  server: number | undefined,
  database: string | undefined,
  metricsUrl?: string,
): Promise<{ warm: LoadResult; run: LoadResult; cpu: string; commits: string }> {
  const warm = await load({ ...options, tag: `${label}-warm`, durationMs: WARMUP_MS });
  log(`  ${label} warm-up: ${describeLoad(warm)}`);
  const before = metricsUrl ? await commitMetrics(metricsUrl) : undefined;
  const window = openCpu(label, server, database);
  const run = await load({ ...options, tag: `${label}-run`, durationMs: DURATION_MS });
  const cpu = closeCpu(window);
  log(`  ${label}: ${describeLoad(run)}`);
  log(`  ${cpu}`);
  let commits = '';
  if (metricsUrl && before) {
    const after = await commitMetrics(metricsUrl);
    const count = after.batchCount - before.batchCount;
    const rows = after.batchSum - before.batchSum;
    const stored = after.storeCount - before.storeCount;
    commits =
      `${label}: group commit (the service's /metrics over the window): ${count.toLocaleString('en-US')} INSERT transactions, ` +
      `mean ${(rows / count).toFixed(1)} requests each (${fmt((count * 1_000) / run.elapsedMs)} commits); ` +
      `mean request-to-committed ${(((after.storeSum - before.storeSum) / stored) * 1_000).toFixed(1)} ms inside the service; ` +
      describeYields(before, after);
    log(`  ${commits}`);
  }
  for (const r of [warm, run]) {
    const bad = r.sent - r.ok;
    if (bad) problems.push(`${label}: ${bad} of ${r.sent} requests did not answer 200: ${describeLoad(r)}`);
  }
  return { warm, run, cpu, commits };
}

interface CommitMetrics {
  batchSum: number;
  batchCount: number;
  storeSum: number;
  storeCount: number;
  /** Pauses of processing workers giving way to intake, and their total length in seconds. */
  yields: number;
  yieldSeconds: number;
}

/** What the processing workers' pauses for intake came to between two readings. */
const describeYields = (before: CommitMetrics, after: CommitMetrics) =>
  `processing gave way to intake ${(after.yields - before.yields).toLocaleString('en-US')} times, ` +
  `${(after.yieldSeconds - before.yieldSeconds).toFixed(2)} s in all`;

/** The intake writer's batch-size histogram and the store-latency histogram, summed over labels. */
async function commitMetrics(url: string): Promise<CommitMetrics> {
  const text = await (await fetch(url, { signal: AbortSignal.timeout(10_000) })).text();
  const sum = (name: string) =>
    text
      .split('\n')
      .filter((line) => line.startsWith(name) && /^[a-z_]+(\{[^}]*\})? /.test(line))
      .filter((line) => line.split(/[{ ]/)[0] === name)
      .reduce((total, line) => total + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
  return {
    batchSum: sum('edm_webhook_commit_batch_size_sum'),
    batchCount: sum('edm_webhook_commit_batch_size_count'),
    storeSum: sum('edm_webhook_store_seconds_sum'),
    storeCount: sum('edm_webhook_store_seconds_count'),
    yields: sum('edm_webhook_processing_yields_total'),
    yieldSeconds: sum('edm_webhook_processing_yield_seconds_total'),
  };
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

interface Fixture {
  headers: Record<string, string>;
  body: unknown;
}

const fixture = (file: string): Fixture => {
  const json = JSON.parse(readFileSync(join(FIXTURES, file), 'utf8')) as Partial<Fixture>;
  return { headers: json.headers ?? {}, body: json.body };
};

/** Header names in lower case, with a JSON content type when the fixture names none. */
const requestHeaders = (headers: Record<string, string>): Record<string, string> => {
  const out: Record<string, string> = { 'content-type': 'application/json' };
  for (const [name, value] of Object.entries(headers)) out[name.toLowerCase()] = value;
  return out;
};

// ---------------------------------------------------------------------------------------------
// Baselines.

const BARE_SERVER = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    Buffer.concat(chunks);
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': 2 });
    res.end('{}');
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`;

/**
 * Baseline (c), the store-first floor: the least a server can do and still answer 200 only for a
 * committed row. `node:http` and one `pg` connection, nothing else: the body read whole, one row
 * per request in the real `event_logs` table (the same seven columns and parameters as the
 * service's intake writer: a UUID v7 id from the built event store, the headers as JSON, the raw
 * body), and group commit by one writer (FLOOR_WRITERS connections, each with one INSERT in
 * flight): the requests that arrive while an INSERT is in flight go in the next one, which is sent
 * before the answers of the last are written. Every batch size is a named statement, parsed and
 * planned once per connection. No routing, no checks, no verification, no metrics, no processing
 * of the stored rows. Prints its INSERT count on SIGTERM.
 */
const FLOOR_SERVER = `
const http = require('node:http');
const { Client } = require('pg');
const { uuidv7 } = require('./dist/libs/event-store/src/uuid-v7.js');
const statements = new Map();
const statement = (rows) => {
  let text = statements.get(rows);
  if (!text) {
    const tuples = [];
    for (let n = 0; n < rows * 7; n += 7)
      tuples.push('($' + (n + 1) + '::uuid, $' + (n + 2) + ', $' + (n + 3) + '::uuid, $' + (n + 4) + ', $' + (n + 5) + '::jsonb, $' + (n + 6) + ', $' + (n + 7) + '::boolean)');
    text = 'INSERT INTO event_logs (id, source, service_id, path, headers, raw_body, verified) VALUES ' + tuples.join(', ');
    statements.set(rows, text);
  }
  return text;
};
const clients = Array.from({ length: Number(process.env.FLOOR_WRITERS) }, () => new Client({ connectionString: process.env.DATABASE_URL }));
const idle = [...clients];
let waiting = [];
let inserts = 0;
const answer = (res, status, body) => {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
};
const flush = () => {
  if (idle.length === 0 || waiting.length === 0) return;
  const batch = waiting.length > 500 ? waiting.splice(0, 500) : waiting;
  if (batch === waiting) waiting = [];
  const values = [];
  for (const w of batch) values.push(w.id, 'engagelab', null, w.path, w.headers, w.body, false);
  const client = idle.pop();
  inserts++;
  const done = (status, body) => {
    idle.push(client);
    flush();
    for (const w of batch) answer(w.res, status, body);
  };
  client.query({ name: 'floor_insert_' + batch.length, text: statement(batch.length), values }).then(
    () => done(200, '{}'),
    (error) => done(503, JSON.stringify({ error: String(error.message) })),
  );
};
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    waiting.push({ id: uuidv7(), path: req.url, headers: JSON.stringify(req.headers), body: Buffer.concat(chunks).toString('utf8'), res });
    flush();
  });
});
Promise.all(clients.map((c) => c.connect())).then(() => server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n')));
process.on('SIGTERM', () => server.close(() => { process.stdout.write('inserts ' + inserts + '\\n'); Promise.all(clients.map((c) => c.end())).then(() => process.exit(0)); }));
`;

/** Runs one of the baseline servers above in a child process under the generator's load. */
async function childServerBaseline(
  label: string,
  source: string,
  engagelab: Fixture,
  env: Record<string, string> = {},
  database?: string,
): Promise<{ warm: LoadResult; run: LoadResult; cpu: string; commits: string; lastLine: string }> {
  const child = spawn(process.execPath, ['-e', source], {
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: resolve(__dirname, '..'),
    env: { ...process.env, ...env },
  });
  baselineServer = child;
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const port = await new Promise<number>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`the ${label} did not start`)), 10_000);
    child.stdout.once('data', (chunk: Buffer) => {
      clearTimeout(timer);
      ok(Number(chunk.toString().trim()));
    });
    child.once('exit', (code) => fail(new Error(`the ${label} exited with ${code}`)));
  });
  log(`${label} (pid ${child.pid}) at http://127.0.0.1:${port}`);
  let loaded: Awaited<ReturnType<typeof warmAndLoad>>;
  try {
    loaded = await warmAndLoad(
      label,
      {
        url: `http://127.0.0.1:${port}`,
        path: '/api/webhooks/mail-event',
        headers: requestHeaders(engagelab.headers),
        kind: 'engagelab',
        template: engagelab.body,
      },
      child.pid,
      database,
    );
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(5_000)]);
    if (child.exitCode === null) child.kill('SIGKILL');
    baselineServer = undefined;
  }
  return { ...loaded, lastLine: output.trim().split('\n').pop() ?? '' };
}

async function bareBaseline(engagelab: Fixture): Promise<LoadResult> {
  return (await childServerBaseline('bare server', BARE_SERVER, engagelab)).run;
}

interface FloorFigure {
  run: LoadResult;
  cpu: string;
  commits: string;
}

/** Baseline (c) on a fresh database migrated as the service's own; checks every 200 is a row. */
async function floorBaseline(engagelab: Fixture): Promise<FloorFigure> {
  const env = await newEnvironment('bench_ingest_floor');
  const dataSource = createDataSource({ url: env.databaseUrl, poolSize: 2, applicationName: 'bench-ingest' });
  await dataSource.initialize();
  try {
    await runMigrations(dataSource);
  } finally {
    await dataSource.destroy();
  }
  const db = await connect(env.databaseUrl, 'bench-ingest');
  try {
    const label = 'store-first floor';
    const { warm, run, cpu, lastLine } = await childServerBaseline(
      label,
      FLOOR_SERVER,
      engagelab,
      { DATABASE_URL: env.databaseUrl, FLOOR_WRITERS: String(FLOOR_WRITERS) },
      databaseName(env),
    );
    const rows = (await db.query(`SELECT count(*)::int AS n FROM event_logs`)).rows[0].n as number;
    const answered = warm.ok + run.ok;
    if (rows !== answered)
      problems.push(
        `store-first floor: event_logs holds ${rows} rows but ${answered} requests were answered 200`,
      );
    const inserts = Number(/^inserts (\d+)$/.exec(lastLine)?.[1] ?? NaN);
    const commits = `${label}: ${rows.toLocaleString('en-US')} rows for ${answered.toLocaleString('en-US')} 200s (warm-up included) in ${inserts.toLocaleString('en-US')} INSERTs, mean ${(rows / inserts).toFixed(1)} rows each`;
    log(`  ${commits}`);
    return { run, cpu, commits };
  } finally {
    await disconnect(db);
    await dispose(env);
  }
}

// ---------------------------------------------------------------------------------------------
// API helpers.

interface Json {
  [key: string]: unknown;
}

async function call(
  apiUrl: string,
  key: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Json> {
  const response = await fetch(`${apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await response.text();
  if (response.status >= 300)
    throw new Error(`${method} ${path} answered ${response.status}: ${text.slice(0, 500)}`);
  return JSON.parse(text) as Json;
}

const adminKey = (env: TestEnvironment) =>
  waitFor(
    'the admin key file',
    async () => {
      try {
        return readFileSync(join(env.home, 'admin-key'), 'utf8').trim();
      } catch {
        return undefined;
      }
    },
    30_000,
  );

/** Waits until the outbox relay has published every committed event. */
async function relayDrained(db: Client, timeoutMs: number): Promise<void> {
  const started = now();
  await waitFor(
    'the outbox relay to drain',
    async () => {
      const { rows } = await db.query(
        `SELECT (SELECT count(*) FROM events)::bigint AS events,
                coalesce((SELECT published FROM relay_checkpoints WHERE name = 'main'), 0)::bigint AS published`,
      );
      return rows[0].events === rows[0].published;
    },
    timeoutMs,
    200,
  );
  log(`  relay drained in ${seconds(now() - started)}`);
}

/** Where the processor stood right after a load window: how much of the intake it had parsed. */
async function processorBacklog(db: Client): Promise<string> {
  const { rows } = await db.query(
    `SELECT count(*) FILTER (WHERE status = 'received')::int AS received,
            count(*) FILTER (WHERE status <> 'received')::int AS processed,
            (SELECT count(*)::int FROM mail_events) AS mail_events
       FROM event_logs`,
  );
  const r = rows[0];
  return `processor: ${r.processed.toLocaleString('en-US')} requests parsed, ${r.received.toLocaleString('en-US')} still 'received', ${r.mail_events.toLocaleString('en-US')} mail_events rows`;
}

/**
 * After a load window (no more intake): how fast the processor parses the backlog left behind,
 * watched for at most `maxMs` (one count a second; not part of any figure).
 */
async function processorCatchUp(db: Client, maxMs: number): Promise<string> {
  const received = async () =>
    (await db.query(`SELECT count(*)::int AS n FROM event_logs WHERE status = 'received'`)).rows[0]
      .n as number;
  const started = now();
  const first = await received();
  let left = first;
  while (left > 0 && now() - started < maxMs) {
    await sleep(1_000);
    left = await received();
  }
  const elapsed = now() - started;
  return `processor catch-up after the load: ${(first - left).toLocaleString('en-US')} requests parsed in ${seconds(elapsed)} = ${fmt(((first - left) * 1_000) / elapsed)}${left ? `, ${left.toLocaleString('en-US')} still 'received' when the bench stopped watching` : ', backlog empty'}`;
}

// ---------------------------------------------------------------------------------------------
// 1 and 2: durable events per second.

interface IntakeFigure {
  run: LoadResult;
  eventsPerSecond: number;
  rows: number;
  cpu: string;
  commits: string;
  backlog: string;
  catchUp: string;
}

async function singleEvents(engagelab: Fixture): Promise<IntakeFigure> {
  const env = await newEnvironment('bench_ingest_single');
  const ingest = await start('webhook-ingest', env.env);
  const db = await connect(env.databaseUrl, 'bench-ingest');
  try {
    const { warm, run, cpu, commits } = await warmAndLoad(
      'single events',
      {
        url: ingest.url,
        path: '/api/webhooks/mail-event',
        headers: requestHeaders(engagelab.headers),
        kind: 'engagelab',
        template: engagelab.body,
      },
      ingest.process.pid,
      databaseName(env),
      `${ingest.url}/metrics`,
    );
    const backlog = await processorBacklog(db);
    log(`  ${backlog}`);
    const rows = (
      await db.query(
        `SELECT count(*)::int AS n FROM event_logs WHERE source = 'engagelab' AND path = '/api/webhooks/mail-event'`,
      )
    ).rows[0].n as number;
    const answered = warm.ok + run.ok;
    log(
      `  event_logs: ${rows.toLocaleString('en-US')} rows; 200s answered (warm-up + run): ${answered.toLocaleString('en-US')}`,
    );
    if (rows !== answered)
      problems.push(
        `single events: event_logs holds ${rows} rows but ${answered} requests were answered 200`,
      );
    const catchUp = await processorCatchUp(db, CATCH_UP_MS);
    log(`  ${catchUp}`);
    return { run, eventsPerSecond: run.perSecond, rows, cpu, commits, backlog, catchUp };
  } finally {
    await disconnect(db);
    await stopService('webhook-ingest (single events)', ingest);
    await dispose(env);
  }
}

async function sendgridBatches(sendgrid: Fixture): Promise<IntakeFigure> {
  const env = await newEnvironment('bench_ingest_sendgrid');
  const api = await start('api', env.env);
  const ingest = await start('webhook-ingest', env.env);
  const db = await connect(env.databaseUrl, 'bench-ingest');
  try {
    const key = await adminKey(env);
    const serviceId = (
      await call(api.url, key, 'POST', '/api/v1/services', {
        name: 'bench sendgrid',
        provider: 'sendgrid',
        from: { email: 'news@example.com' },
        pace: { intervalMs: 0 },
        credentials: { apiKey: 'SG.x' },
        options: { baseUrl: 'http://127.0.0.1:9' },
      })
    ).id as string;
    log(`  SendGrid service ${serviceId} created through the API`);
    await relayDrained(db, 30_000);
    await stopService('api (sendgrid)', api);
    const { warm, run, cpu, commits } = await warmAndLoad(
      'sendgrid batches',
      {
        url: ingest.url,
        path: `/api/webhooks/sendgrid/${serviceId}`,
        headers: requestHeaders(sendgrid.headers),
        kind: 'sendgrid',
        template: sendgrid.body,
      },
      ingest.process.pid,
      databaseName(env),
      `${ingest.url}/metrics`,
    );
    const backlog = await processorBacklog(db);
    log(`  ${backlog}`);
    const rows = (
      await db.query(
        `SELECT count(*)::int AS n FROM event_logs WHERE source = 'sendgrid' AND service_id = $1`,
        [serviceId],
      )
    ).rows[0].n as number;
    const answered = warm.ok + run.ok;
    log(
      `  event_logs: ${rows.toLocaleString('en-US')} rows; 200s answered (warm-up + run): ${answered.toLocaleString('en-US')}`,
    );
    if (rows !== answered)
      problems.push(
        `sendgrid batches: event_logs holds ${rows} rows but ${answered} requests were answered 200`,
      );
    const catchUp = await processorCatchUp(db, CATCH_UP_MS);
    log(`  ${catchUp}`);
    return { run, eventsPerSecond: run.perSecond * BATCH, rows, cpu, commits, backlog, catchUp };
  } finally {
    await disconnect(db);
    if (services.has(api)) await stopService('api (sendgrid)', api);
    await stopService('webhook-ingest (sendgrid)', ingest);
    await dispose(env);
  }
}

// ---------------------------------------------------------------------------------------------
// 3: latency webhook -> sub-task updated.

interface LatencyFigure {
  /** Per stage, ms from the request's send: its raw row inserted, then parsed into an event. */
  stored: number[];
  parsed: number[];
  applyStart: number[];
  visible: number[];
  /** The warm-up's events, seen committed: a freshly started process, for reference. */
  warmVisible: number[];
  sendWindowMs: number;
  offsetMs: number;
  rttMs: number;
  request: number[];
  applyWindowMs: number;
  /** Seen-committed events over the goal, per 500 ms of the measured window by their send time. */
  slowByWindow: number[];
  cpu: string;
}

/** Postgres clock minus the local clock, from the round trip with the smallest RTT of several. */
async function clockOffset(db: Client): Promise<{ offsetMs: number; rttMs: number }> {
  let best = { offsetMs: 0, rttMs: Infinity };
  for (let i = 0; i < 9; i += 1) {
    const t0 = wall();
    const { rows } = await db.query(`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS t`);
    const t1 = wall();
    if (t1 - t0 < best.rttMs) best = { offsetMs: rows[0].t - (t0 + t1) / 2, rttMs: t1 - t0 };
  }
  return best;
}

async function latency(): Promise<LatencyFigure> {
  const env = await newEnvironment('bench_ingest_latency');
  const api = await start('api', env.env);
  const ingest = await start('webhook-ingest', env.env);
  const db = await connect(env.databaseUrl, 'bench-ingest');
  const watchDb = await connect(env.databaseUrl, 'bench-ingest-watch');
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  let dispatcher: ServiceProcess | undefined;
  try {
    const key = await adminKey(env);
    const serviceId = (
      await call(api.url, key, 'POST', '/api/v1/services', {
        name: 'bench sandbox',
        provider: 'sandbox',
        from: { email: 'news@example.com' },
        pace: { intervalMs: 0 },
        credentials: {},
        options: { latencyMs: 0, callbacks: { delivered: 0 } },
      })
    ).id as string;
    await call(api.url, key, 'POST', '/api/v1/contacts', {
      contacts: Array.from({ length: LATENCY_WARMUP + LATENCY_RECIPIENTS }, (_, i) => ({
        email: `lat-${i}@bench.example.com`,
        tags: ['latency'],
      })),
    });
    dispatcher = await start('dispatcher', { ...env.env, TRACKING_BASE_URL: 'http://127.0.0.1:9' });
    const sendStarted = now();
    const task = await call(api.url, key, 'POST', '/api/v1/tasks', {
      name: 'latency',
      subject: 'Bench',
      text: 'Hello from the bench.',
      recipients: { tags: ['latency'] },
      serviceIds: [serviceId],
    });
    const taskId = task.id as string;
    await waitFor(
      'the task to complete',
      async () => (await call(api.url, key, 'GET', `/api/v1/tasks/${taskId}`)).status === 'completed',
      300_000,
      250,
    );
    log(
      `  task ${taskId}: ${(LATENCY_WARMUP + LATENCY_RECIPIENTS).toLocaleString('en-US')} sub-tasks sent by the dispatcher in ${seconds(now() - sendStarted)} (not timed)`,
    );
    await stopService('dispatcher', dispatcher);
    dispatcher = undefined;
    await relayDrained(db, 120_000);

    const subs = (
      await db.query(`SELECT id, tracking_id, email, status FROM sub_tasks WHERE task_id = $1 ORDER BY id`, [
        taskId,
      ])
    ).rows as { id: string; tracking_id: string; email: string; status: string }[];
    if (subs.length !== LATENCY_WARMUP + LATENCY_RECIPIENTS)
      throw new Error(
        `task ${taskId} has ${subs.length} sub-tasks, expected ${LATENCY_WARMUP + LATENCY_RECIPIENTS}`,
      );
    const notSent = subs.filter((s) => s.status !== 'sent').length;
    if (notSent) throw new Error(`${notSent} sub-tasks of task ${taskId} are not 'sent' before the events`);
    const { offsetMs, rttMs } = await clockOffset(db);
    log(`  Postgres clock - local clock = ${offsetMs.toFixed(3)} ms (round trip ${rttMs.toFixed(2)} ms)`);

    // The watcher: one query every WATCH_EVERY_MS, never per sub-task. Several workers commit
    // concurrently, so positions do not appear in commit order: it reads past `low`, the highest
    // position below which every position has been seen (a gap older than GAP_MS is a rolled-back
    // insert, and skipped), and stamps each SubTaskProgressed the first time it shows up.
    const seen = new Map<string, number>();
    let watching = true;
    let low = Number(
      (await watchDb.query(`SELECT coalesce(max(global_position), 0)::bigint AS p FROM events`)).rows[0].p,
    );
    const above = new Set<number>();
    let gapSince: number | undefined;
    const GAP_MS = 2_000;
    const watcher = (async () => {
      while (watching) {
        const { rows } = await watchDb.query(
          `SELECT global_position::float8 AS p, type, data->>'subTaskId' AS id,
                  (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS at
             FROM events WHERE global_position > $1 ORDER BY global_position`,
          [low],
        );
        for (const r of rows as { p: number; type: string; id: string; at: number }[]) {
          if (r.type === 'SubTaskProgressed' && !seen.has(r.id)) seen.set(r.id, r.at);
          above.add(r.p);
        }
        while (above.size) {
          if (above.delete(low + 1)) {
            low += 1;
            gapSince = undefined;
          } else if ((gapSince ??= wall()) < wall() - GAP_MS) {
            low += 1;
            gapSince = undefined;
          } else break;
        }
        await sleep(WATCH_EVERY_MS);
      }
    })();

    const target = new URL(ingest.url);
    const path = `/api/webhooks/sandbox/${serviceId}`;
    const sentAt = new Map<string, number>();
    const warmSentAt = new Map<string, number>();
    const requestMs: number[] = [];
    const statuses: Record<string, number> = {};
    const post = (sub: (typeof subs)[number], i: number) =>
      new Promise<void>((done) => {
        const body = JSON.stringify({
          events: [
            {
              eventId: `bench-lat-${i}`,
              type: 'delivered',
              trackingId: sub.tracking_id,
              email: sub.email,
              timestamp: Date.now(),
            },
          ],
        });
        const at = wall();
        const req = request(
          {
            host: target.hostname,
            port: target.port,
            path,
            method: 'POST',
            agent,
            headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          },
          (res) => {
            res.resume();
            res.on('end', () => {
              statuses[String(res.statusCode)] = (statuses[String(res.statusCode)] ?? 0) + 1;
              if (i >= LATENCY_WARMUP) requestMs.push(wall() - at);
              done();
            });
          },
        );
        req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error('timeout')));
        req.on('error', (e: NodeJS.ErrnoException) => {
          statuses[e.code ?? e.message] = (statuses[e.code ?? e.message] ?? 0) + 1;
          done();
        });
        (i >= LATENCY_WARMUP ? sentAt : warmSentAt).set(sub.id, at + offsetMs);
        req.end(body);
      });

    // Open loop at LATENCY_RATE/s: request i is due at i / rate after the start. The first
    // LATENCY_WARMUP are the warm-up (the process's first requests, its pool's first connections):
    // answered and applied like the rest, left out of the figures and the CPU window.
    let window: CpuWindow | undefined;
    const pending: Promise<void>[] = [];
    const metricsBefore = await commitMetrics(`${ingest.url}/metrics`);
    const paceStart = wall();
    let measuredStart = paceStart;
    let next = 0;
    while (next < subs.length) {
      const due = Math.floor(((wall() - paceStart) * LATENCY_RATE) / 1_000) + 1;
      while (next < Math.min(due, subs.length)) {
        if (next === LATENCY_WARMUP) {
          window = openCpu('latency (paced events)', ingest.process.pid, databaseName(env));
          measuredStart = wall();
        }
        pending.push(post(subs[next], next));
        next += 1;
      }
      await sleep(1);
    }
    const sendWindowMs = wall() - measuredStart;
    await Promise.all(pending);
    log(
      `  ${LATENCY_WARMUP.toLocaleString('en-US')} warm-up + ${LATENCY_RECIPIENTS.toLocaleString('en-US')} delivered events sent, the latter in ${seconds(sendWindowMs)} (${fmt((LATENCY_RECIPIENTS * 1_000) / sendWindowMs)}); answers ${JSON.stringify(statuses)}`,
    );
    if ((statuses['200'] ?? 0) !== subs.length)
      problems.push(`latency: not every event request was answered 200: ${JSON.stringify(statuses)}`);

    await waitFor(
      'every sub-task to be delivered',
      async () =>
        (
          await db.query(
            `SELECT count(*)::int AS n FROM events WHERE type = 'SubTaskProgressed' AND data->>'taskId' = $1`,
            [taskId],
          )
        ).rows[0].n >= subs.length,
      180_000,
      200,
    ).catch((error: unknown) => problems.push(`latency: ${String(error)}`));
    log(
      `  ${describeYields(metricsBefore, await commitMetrics(`${ingest.url}/metrics`))} (warm-up included)`,
    );
    await sleep(3 * WATCH_EVERY_MS + 50);
    watching = false;
    await watcher;
    const cpu = closeCpu(window!);
    log(`  ${cpu}`);

    const applied = (
      await db.query(
        `SELECT data->>'subTaskId' AS id, (extract(epoch FROM occurred_at) * 1000)::float8 AS at
           FROM events WHERE type = 'SubTaskProgressed' AND data->>'taskId' = $1`,
        [taskId],
      )
    ).rows as { id: string; at: number }[];
    const perSub = new Map<string, number>();
    for (const a of applied) {
      if (perSub.has(a.id))
        problems.push(`latency: sub-task ${a.id} has more than one SubTaskProgressed event`);
      perSub.set(a.id, a.at);
    }
    const applyStart: number[] = [];
    const visible: number[] = [];
    const slowByWindow: number[] = Array.from({ length: Math.ceil(sendWindowMs / 500) }, () => 0);
    for (const [id, sent] of sentAt) {
      const at = perSub.get(id);
      if (at !== undefined) applyStart.push(at - sent);
      const saw = seen.get(id);
      if (saw !== undefined) visible.push(saw - sent);
      if (saw !== undefined && saw - sent >= GOAL_P99_MS) {
        const window = Math.floor((sent - offsetMs - measuredStart) / 500);
        slowByWindow[Math.min(Math.max(window, 0), slowByWindow.length - 1)] += 1;
      }
    }
    const warmVisible = [...warmSentAt].flatMap(([id, sent]) => (seen.has(id) ? [seen.get(id)! - sent] : []));
    // Where the time goes, per sub-task: its raw row's insert and its provider event's insert
    // (both clock_timestamp() inside their transactions, so before those commit).
    const stages = (
      await db.query(
        `SELECT m.sub_task_id AS id, (extract(epoch FROM l.received_at) * 1000)::float8 AS stored,
                (extract(epoch FROM m.received_at) * 1000)::float8 AS parsed
           FROM mail_events m JOIN event_logs l ON l.id = m.event_log_id WHERE m.matched_task_id = $1`,
        [taskId],
      )
    ).rows as { id: string; stored: number; parsed: number }[];
    const stored: number[] = [];
    const parsed: number[] = [];
    for (const stage of stages) {
      const sent = sentAt.get(stage.id);
      if (sent === undefined) continue;
      stored.push(stage.stored - sent);
      parsed.push(stage.parsed - sent);
    }
    const [{ delivered, dated }] = (
      await db.query(
        `SELECT count(*) FILTER (WHERE status = 'delivered')::int AS delivered, count(delivered_at)::int AS dated
           FROM sub_tasks WHERE task_id = $1`,
        [taskId],
      )
    ).rows;
    log(
      `  sub_tasks: ${delivered} delivered, ${dated} with delivered_at; SubTaskProgressed: ${applied.length}; seen by the watcher: ${visible.length}`,
    );
    if (delivered !== subs.length)
      problems.push(`latency: ${delivered} of ${subs.length} sub-tasks are delivered`);
    if (visible.length !== applyStart.length)
      observations.push(`the watcher saw ${visible.length} of ${applyStart.length} SubTaskProgressed events`);
    const occurred = applied.filter((a) => sentAt.has(a.id)).map((a) => a.at);
    const applyWindowMs = occurred.length ? Math.max(...occurred) - Math.min(...occurred) : NaN;
    const negative = applyStart.filter((v) => v < 0).length;
    if (negative)
      observations.push(
        `${negative} sub-tasks have an apply transaction that STARTED before their request was sent (occurred_at is the transaction's now())`,
      );
    return {
      stored,
      parsed,
      applyStart,
      visible,
      warmVisible,
      sendWindowMs,
      offsetMs,
      rttMs,
      request: requestMs,
      applyWindowMs,
      slowByWindow,
      cpu,
    };
  } finally {
    agent.destroy();
    await disconnect(watchDb);
    await disconnect(db);
    if (dispatcher) await stopService('dispatcher', dispatcher);
    await stopService('webhook-ingest (latency)', ingest);
    await stopService('api (latency)', api);
    await dispose(env);
  }
}

function printLatency(lat: LatencyFigure): void {
  const row = (name: string, values: number[], judged = true) => {
    const p99 = percentile(values, 99);
    return [
      name,
      String(values.length),
      ms1(percentile(values, 50)),
      ms1(p99),
      ms1(values.length ? Math.max(...values) : NaN),
      judged ? `p99 < ${GOAL_P99_MS} ms` : '-',
      judged ? (p99 < GOAL_P99_MS ? 'PASS' : 'MISS') : '-',
    ];
  };
  printTable(
    ['latency webhook -> sub-task delivered', 'n', 'p50', 'p99', 'max', 'goal', 'result'],
    [
      row('raw row inserted (event_logs.received_at)', lat.stored, false),
      row('request answered (raw row committed)', lat.request, false),
      row('parsed (mail_events.received_at)', lat.parsed, false),
      row('to apply tx start (events.occurred_at)', lat.applyStart),
      row(`to seen committed (watcher, ${WATCH_EVERY_MS} ms)`, lat.visible),
      row('warm-up (fresh process, counted apart): seen committed', lat.warmVisible, false),
    ],
  );
  log(
    `latency: sent ${LATENCY_RECIPIENTS} in ${seconds(lat.sendWindowMs)} (${fmt((LATENCY_RECIPIENTS * 1_000) / lat.sendWindowMs)}); ` +
      `applies spread over ${seconds(lat.applyWindowMs)} (${fmt((LATENCY_RECIPIENTS * 1_000) / lat.applyWindowMs)}); clock offset ${lat.offsetMs.toFixed(3)} ms`,
  );
  // A stall shows as one or two windows holding the slow events; a slow pipeline, as all of them.
  log(
    `latency: events seen committed ${GOAL_P99_MS} ms or more after their request, per 500 ms of the window: ${lat.slowByWindow.join(' ')}`,
  );
  log(lat.cpu);
}

// ---------------------------------------------------------------------------------------------

/** Baseline (b): pgbench -N -c 8 on a scratch database of the same Postgres. */
const pgbenchBaseline = () =>
  runPgbench({
    adminUrl: POSTGRES_ADMIN_URL,
    pgbench: PGBENCH,
    scale: 10,
    runArgs: ['-N', '-c', '8', '-j', '2', '-T', '15'],
    track: pgbenchDatabases,
    timeoutMs: 240_000,
  });

async function main(): Promise<void> {
  const disarm = watchdog(TIME_LIMIT_MS, cleanup);
  try {
    log(`bench ingest: ${machine()}`);
    const engagelab = fixture('engagelab-target.json');
    const sendgrid = fixture('sendgrid-batch.json');
    if (!Array.isArray(sendgrid.body)) throw new Error('sendgrid-batch.json: body is not an array');
    const admin = await connect(POSTGRES_ADMIN_URL, 'bench-ingest');
    const [{ version }] = (await admin.query(`SELECT current_setting('server_version') AS version`)).rows;
    const settings = (
      await admin.query(
        `SELECT name, setting FROM pg_settings WHERE name IN ('synchronous_commit', 'fsync', 'commit_delay', 'wal_sync_method', 'shared_buffers', 'max_connections') ORDER BY name`,
      )
    ).rows.map((r) => `${r.name}=${r.setting}`);
    await disconnect(admin);
    log(`postgres ${version}: ${settings.join(', ')}`);
    log(
      `load generator: worker thread, raw keep-alive sockets, ${CONCURRENCY} in flight, ${WARMUP_MS / 1_000} s warm-up + ${DURATION_MS / 1_000} s`,
    );

    if (process.env.BENCH_INGEST_ONLY === 'single') {
      // Exploring intake alone: the baselines and part 1.
      const bareRun = await bareBaseline(engagelab);
      const pgbench = await pgbenchBaseline();
      log(`  ${pgbench.line}`);
      const floor = await floorBaseline(engagelab);
      const single = await singleEvents(engagelab);
      log(floor.cpu);
      log(single.cpu);
      log(single.commits);
      log(
        `floor ${fmt(floor.run.perSecond)} = ${(floor.run.perSecond / pgbench.tps).toFixed(2)}x pgbench, ${(floor.run.perSecond / bareRun.perSecond).toFixed(2)}x bare`,
      );
      log(
        `single ${fmt(single.eventsPerSecond)} = ${(single.eventsPerSecond / pgbench.tps).toFixed(2)}x pgbench, ${(single.eventsPerSecond / bareRun.perSecond).toFixed(2)}x bare, ${(single.eventsPerSecond / floor.run.perSecond).toFixed(2)}x floor`,
      );
      return;
    }
    if (process.env.BENCH_INGEST_ONLY === 'latency') {
      // Exploring the latency alone: part 3, without the throughput parts or their baselines.
      const lat = await latency();
      printLatency(lat);
      return;
    }
    log('baseline (a): bare node:http server');
    const bareRun = await bareBaseline(engagelab);
    log('baseline (b): pgbench -N -c 8 -j 2 -T 15 on a scratch database (-i -s 10)');
    const pgbenchWindow = openCpu('pgbench');
    const pgbench = await pgbenchBaseline();
    const pgbenchCpu = closeCpu(pgbenchWindow);
    log(`  ${pgbench.line} (${pgbench.version})`);
    log(`  ${pgbenchCpu} (includes pgbench -i)`);
    if (pgbench.failed) observations.push(`pgbench reported ${pgbench.failed} failed transactions`);
    log(
      'baseline (c): the store-first floor (node:http, one pg connection, named statements, group commit into event_logs)',
    );
    const floor = await floorBaseline(engagelab);

    log('1. single EngageLab events to /api/webhooks/mail-event');
    const single = await singleEvents(engagelab);
    log(`2. SendGrid batches of ${BATCH} to /api/webhooks/sendgrid/<serviceId>`);
    const batches = await sendgridBatches(sendgrid);
    log(
      `3. latency: ${LATENCY_RECIPIENTS.toLocaleString('en-US')} delivered sandbox events at ${LATENCY_RATE}/s`,
    );
    const lat = await latency();

    process.stdout.write('\n');
    log(`bare server:  ${describeLoad(bareRun)}`);
    log(`pgbench -N:   ${pgbench.line}`);
    log(`floor:        ${describeLoad(floor.run)}`);
    log(`single:       ${describeLoad(single.run)}`);
    log(`sendgrid:     ${describeLoad(batches.run)} = ${fmt(batches.eventsPerSecond)} events`);
    printComparison([
      {
        figure: 'single events (200s, durable)',
        measured: single.eventsPerSecond,
        baselineName: 'pgbench -N -c 8 TPS',
        baseline: pgbench.tps,
        goal: GOAL_VS_PGBENCH,
      },
      {
        figure: 'single events (200s, durable)',
        measured: single.eventsPerSecond,
        baselineName: 'bare node:http req/s',
        baseline: bareRun.perSecond,
        goal: GOAL_VS_BARE,
      },
    ]);
    process.stdout.write('\n');
    printTable(
      ['figure (no goal)', 'events/s', 'vs pgbench -N TPS', 'vs bare req/s'],
      [
        [
          'store-first floor, baseline (c)',
          fmt(floor.run.perSecond),
          `${(floor.run.perSecond / pgbench.tps).toFixed(2)}x`,
          `${(floor.run.perSecond / bareRun.perSecond).toFixed(2)}x`,
        ],
        [
          `single events against the floor: ${(single.eventsPerSecond / floor.run.perSecond).toFixed(2)}x`,
          fmt(single.eventsPerSecond),
          `${(single.eventsPerSecond / pgbench.tps).toFixed(2)}x`,
          `${(single.eventsPerSecond / bareRun.perSecond).toFixed(2)}x`,
        ],
        [
          `SendGrid, ${BATCH} events/request (${fmt(batches.run.perSecond)} requests)`,
          fmt(batches.eventsPerSecond),
          `${(batches.eventsPerSecond / pgbench.tps).toFixed(2)}x`,
          `${(batches.eventsPerSecond / bareRun.perSecond).toFixed(2)}x`,
        ],
      ],
    );
    process.stdout.write('\n');
    printLatency(lat);
    for (const line of [
      floor.cpu,
      floor.commits,
      single.cpu,
      single.commits,
      single.backlog,
      single.catchUp,
      batches.cpu,
      batches.commits,
      batches.backlog,
      batches.catchUp,
    ])
      log(line);
    for (const o of observations) log(`observation: ${o}`);
    if (problems.length) {
      for (const p of problems) process.stderr.write(`problem: ${p}\n`);
      process.exitCode = 1;
    }
  } finally {
    await cleanup();
    disarm();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench ingest failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  if (serviceOutput)
    process.stderr.write(`last stopped service's output (tail):\n${serviceOutput.slice(-4_000)}\n`);
  process.exitCode = 1;
});
