/**
 * Bench: the dispatcher, in one run: throughput, latency to first mail and pace accuracy.
 *
 * Run (after `npm run build`, with Postgres on 127.0.0.1:5432, NATS JetStream on 127.0.0.1:4222
 * and pgbench at /usr/bin/pgbench, or set PGBENCH):
 *
 *   node -r @swc-node/register bench/dispatch.ts
 *
 * Baseline (first, on a quiet server): pgbench's simple-update script on the same Postgres, in a
 * scratch database made for it: `pgbench -i -s 10`, then `pgbench -N -c 4 -j 2 -T 20`; the `tps`
 * line is parsed and the database dropped.
 *
 * Everything else runs against one fresh test environment (own database, stream and subject
 * prefix), with the built API and dispatcher (dist/) started as processes, one tenant per part:
 *
 * 1. Throughput. Tenant with 4 sandbox services, pace `{ intervalMs: 0 }` (no limit), options
 *    `{ latencyMs: 0, callbacks: { delivered: 0 } }`; 100,000 contacts with one tag (10 POSTs of
 *    10,000, not timed). ONE dispatcher (DISPATCH_MAX_BATCH / DISPATCH_CONCURRENCY below) is
 *    started, then one task over the tag is created; timed from the POST's response to the task
 *    row reading `completed` (polled every 100 ms: the column GET /api/v1/tasks/:id answers,
 *    confirmed by a GET at the end). Figure: sub-tasks sent per second. Checks: GET says completed
 *    with 100,000 sent, every sub-task of the task is `sent`, `sandbox_messages` holds exactly
 *    100,000 rows (one per sub-task, none accepted twice). If the first run took less than 3
 *    minutes, a second task over the same contacts is dispatched by TWO dispatcher processes and
 *    measured the same way (the table then holds 200,000 rows). Goal: >= 1.0x the pgbench TPS.
 * 2. Latency to first mail. A tenant with one unpaced service; a fresh dispatcher with the
 *    production DISPATCH_* defaults. 50 tasks of 1 recipient, one after another, each created
 *    once the previous one completed and the dispatcher has been idle for 0.4 to 1.6 s. Per task:
 *    `accepted_at` of its sandbox row (joined on idempotency_key = sub_tasks.id::text) minus the
 *    Postgres clock read right after the POST's response (`clock_timestamp()`). Also shown: from
 *    `tasks.created_at`. Goal: p99 < 1 s (nearest rank: with 50 samples, the worst).
 * 3. Pace accuracy. A tenant with two services at `intervalMs` 310 and 180 and one task of 60
 *    recipients. Per service: mean gap between consecutive `accepted_at` = (last - first) / (n - 1)
 *    divided by the configured interval, and the smallest gap. Goal: ratio in 1.00..1.05 and the
 *    smallest gap >= the configured interval.
 *
 * The machine may be shared: for each timed window the bench adds up the CPU time that processes
 * outside its own process tree used (other programs, Postgres backends of other databases; read
 * from /proc, a lower bound) and says so when that exceeds 5% of the cores' time. It also samples
 * what the environment's Postgres backends wait on during the throughput runs, and warns when
 * dist/ was rebuilt while it ran. Cost per unit: the CPU of each process group per 1,000 mails
 * (with the WAL), and the whole machine's busy CPU (/proc/stat) per 1,000 mails beside the same
 * per 1,000 pgbench transactions, with how busy pgbench kept the cores: where pgbench keeps them
 * busy, the throughput goal asks a mail to cost no more than one of its transactions.
 *
 * Prints each figure beside its baseline and goal. A miss is printed, never an exit code; the
 * exit code is 1 only when something breaks (a failed request, a wrong count, a timeout) or 2 when
 * the watchdog fires. Only 127.0.0.1 traffic; bounded by a watchdog; cleans up after itself
 * (stops the processes, drops both databases, deletes the stream).
 *
 * Overrides for exploring: BENCH_DISPATCH_MAX_BATCH, BENCH_DISPATCH_CONCURRENCY (part 1 only),
 * BENCH_DISPATCH_TWO=0 (skip the two-dispatcher figure).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { cpus } from 'node:os';
import { promisify } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { Client } from 'pg';
import { BUS_SUBSCRIPTIONS } from '@edm/platform';
import {
  callApi,
  createTestEnvironment,
  Json,
  ServiceProcess,
  startService,
  TestEnvironment,
} from '@edm/testing';
import {
  clockTicks,
  fmt,
  log,
  machine,
  machineTicks,
  now,
  percentile,
  printComparison,
  printTable,
  ProcessCpu,
  processCpu,
  processTree,
  rate,
  waitFor,
  watchdog,
} from './bench-util';

const execFileAsync = promisify(execFile);

const POSTGRES_ADMIN_URL = process.env.EDM_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const PGBENCH = process.env.PGBENCH ?? '/usr/bin/pgbench';

const CONTACTS = 100_000;
const CONTACT_BATCH = 10_000;
const THROUGHPUT_SERVICES = 4;
/** Part 1's dispatcher settings (the defaults are 50 and 32). */
const MAX_BATCH = Number(process.env.BENCH_DISPATCH_MAX_BATCH ?? 200);
const CONCURRENCY = Number(process.env.BENCH_DISPATCH_CONCURRENCY ?? 32);
const TWO_DISPATCHERS = process.env.BENCH_DISPATCH_TWO !== '0';
const TWO_DISPATCHERS_IF_UNDER_MS = 3 * 60_000;
const THROUGHPUT_GOAL = 1.0;
const LATENCY_TASKS = 50;
const LATENCY_GOAL_MS = 1_000;
const PACES = [310, 180] as const;
const PACE_RECIPIENTS = 60;
const PACE_RATIO_MAX = 1.05;

const TIME_LIMIT_MS = 20 * 60_000;
const REQUEST_TIMEOUT_MS = 120_000;
const DISPATCH_TIMEOUT_MS = 6 * 60_000;
const FIRST_MAIL_TIMEOUT_MS = 10_000;
const DRAIN_TIMEOUT_MS = 120_000;

let env: TestEnvironment | undefined;
let api: ServiceProcess | undefined;
const dispatchers: ServiceProcess[] = [];
let db: Client | undefined;
let nc: NatsConnection | undefined;
let pgbenchDatabase: string | undefined;
const outputs: { name: string; text: string }[] = [];
/** Things that broke (exit 1) and things worth a look (printed only). */
const problems: string[] = [];
const observations: string[] = [];

// ---------------------------------------------------------------------------------------------
// The machine is shared: how much CPU did processes that are not this bench's use meanwhile?

const TICKS_PER_SECOND = clockTicks();
/** Databases whose backends count as this bench's own. */
const ourDatabases = new Set<string>();
/** Postgres' and NATS' own processes: used by everyone, counted neither way. */
const SHARED_PROCESS =
  /^postgres: .*(checkpointer|background writer|walwriter|autovacuum|logical replication|archiver|wal sender|wal receiver)|bin\/postgres|nats-server/;

interface CpuWindow {
  label: string;
  started: number;
  before: Map<number, ProcessCpu>;
  machine: { busy: number; total: number };
}
const cpuWindows: { label: string; wallMs: number; foreignSeconds: number; top: string[] }[] = [];

const openCpuWindow = (label: string): CpuWindow => ({
  label,
  started: now(),
  before: processCpu(),
  machine: machineTicks(),
});

/** The whole machine's CPU since the window opened: busy CPU-seconds and the cores' busy share. */
function machineUse(window: CpuWindow): { seconds: number; share: number } {
  const after = machineTicks();
  const busy = after.busy - window.machine.busy;
  return { seconds: busy / TICKS_PER_SECOND, share: busy / (after.total - window.machine.total) };
}

/** Machine CPU-seconds per 1,000 mails of the first throughput run, for the summary. */
const mailCosts: number[] = [];

/**
 * CPU seconds that processes outside this bench's process tree used during the window: other
 * programs and Postgres backends of other databases. A lower bound: processes that ended within
 * the window are not seen.
 */
function closeCpuWindow(window: CpuWindow): void {
  const wallMs = now() - window.started;
  const after = processCpu();
  const ours = processTree(after, process.pid);
  const foreign = new Map<string, number>();
  for (const [pid, p] of after) {
    if (ours.has(pid) || !p.command || SHARED_PROCESS.test(p.command)) continue;
    if (p.command.startsWith('postgres:') && [...ourDatabases].some((db) => p.command.includes(` ${db} `)))
      continue;
    const ticks = p.ticks - (window.before.get(pid)?.ticks ?? 0);
    if (ticks <= 0) continue;
    const key = p.command.startsWith('postgres:')
      ? 'postgres backends of other databases'
      : p.command.slice(0, 70);
    foreign.set(key, (foreign.get(key) ?? 0) + ticks / TICKS_PER_SECOND);
  }
  const foreignSeconds = [...foreign.values()].reduce((a, b) => a + b, 0);
  const top = [...foreign]
    .filter(([, cpu]) => cpu >= 1)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([command, cpu]) => `${cpu.toFixed(1)} s ${command}`);
  cpuWindows.push({ label: window.label, wallMs, foreignSeconds, top });
  const available = (wallMs / 1_000) * cpus().length;
  log(
    `  other processes during ${window.label}: >= ${foreignSeconds.toFixed(1)} CPU-s of ${available.toFixed(0)} available` +
      (top.length ? ` (${top.join('; ')})` : ''),
  );
  if (foreignSeconds > 0.05 * available)
    observations.push(
      `${window.label}: other processes used >= ${foreignSeconds.toFixed(1)} of ${available.toFixed(0)} CPU-seconds (${((100 * foreignSeconds) / available).toFixed(0)}%): ${top.join('; ')}; the figure may be depressed by it`,
    );
}

/**
 * What the mails of a throughput run cost, per 1,000: CPU seconds of Postgres' backends of this
 * bench's database, of the dispatchers, of the API (which holds the outbox relay) and of NATS,
 * and the WAL Postgres wrote. Steadier than the rate from run to run, so a change's effect on the
 * work per mail shows even when the machine's speed varies.
 */
async function logCost(window: CpuWindow, walBefore: string, mails: number, dispatcherPids: number[]) {
  const whole = machineUse(window);
  const after = processCpu();
  const groups = new Map<string, number>();
  const add = (group: string, ticks: number) => groups.set(group, (groups.get(group) ?? 0) + ticks);
  const ours = new URL(env!.databaseUrl).pathname.slice(1);
  for (const [pid, p] of after) {
    const ticks = p.ticks - (window.before.get(pid)?.ticks ?? 0);
    if (ticks <= 0) continue;
    if (dispatcherPids.includes(pid)) add('dispatchers', ticks);
    else if (pid === api?.process.pid) add('API and relay', ticks);
    else if (p.command.includes('nats-server')) add('NATS', ticks);
    else if (p.command.startsWith('postgres:') && p.command.includes(` ${ours} `))
      add('Postgres backends', ticks);
  }
  const { rows } = await database().query(
    `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8 AS bytes`,
    [walBefore],
  );
  const per1000 = (ticks: number) => ((ticks / TICKS_PER_SECOND) * 1_000) / mails;
  log(
    `  cost per 1,000 mails: ${[...groups]
      .sort((x, y) => y[1] - x[1])
      .map(([group, ticks]) => `${group} ${per1000(ticks).toFixed(2)} CPU-s`)
      .join(', ')}; WAL ${(((rows[0].bytes / mails) * 1_000) / 1_048_576).toFixed(2)} MiB`,
  );
  const machinePer1000 = (whole.seconds * 1_000) / mails;
  mailCosts.push(machinePer1000);
  log(
    `  the whole machine: ${machinePer1000.toFixed(2)} CPU-s per 1,000 mails, cores ${(whole.share * 100).toFixed(0)}% busy`,
  );
}

/** Newest modification time under dist/ (apps and libs): a rebuild during the run changes it. */
function distStamp(): number {
  let newest = 0;
  const walk = (dir: string) => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(dir, name);
      const stat = statSync(path, { throwIfNoEntry: false });
      if (!stat) continue;
      if (stat.isDirectory()) walk(path);
      else if (name.endsWith('.js')) newest = Math.max(newest, stat.mtimeMs);
    }
  };
  walk(resolve(__dirname, '../dist/apps'));
  walk(resolve(__dirname, '../dist/libs'));
  return newest;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const seconds = (ms: number) => `${(ms / 1_000).toFixed(2)} s`;
const millis = (ms: number) => `${Math.round(ms).toLocaleString('en-US')} ms`;

async function adminQuery(sql: string): Promise<void> {
  const admin = new Client({ connectionString: POSTGRES_ADMIN_URL, application_name: 'bench-dispatch' });
  await admin.connect();
  try {
    await admin.query(sql);
  } finally {
    await admin.end();
  }
}

/** Stops a process (SIGTERM, then SIGKILL after 30 s); keeps its output; returns its exit code. */
async function stopProcess(name: string, running: ServiceProcess): Promise<number | null | 'killed'> {
  const stopped = await Promise.race([
    running.stop(),
    new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000)),
  ]);
  outputs.push({ name, text: running.output() });
  if (stopped !== 'timeout') return stopped;
  await running.kill();
  return 'killed';
}

async function stopDispatchers(): Promise<(number | null | 'killed')[]> {
  const running = dispatchers.splice(0);
  return Promise.all(running.map((d, i) => stopProcess(`dispatcher ${d.process.pid ?? i}`, d)));
}

async function cleanup(): Promise<void> {
  await stopDispatchers().catch(() => undefined);
  const runningApi = api;
  api = undefined;
  if (runningApi) await stopProcess('api', runningApi).catch(() => undefined);
  await db?.end().catch(() => undefined);
  db = undefined;
  await nc?.close().catch(() => undefined);
  nc = undefined;
  await env?.dispose().catch(() => undefined);
  env = undefined;
  if (pgbenchDatabase) {
    const name = pgbenchDatabase;
    pgbenchDatabase = undefined;
    await adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Baseline: pgbench -N on the same Postgres.

async function pgbenchBaseline(): Promise<{
  tps: number;
  version: string;
  line: string;
  machinePer1000: number;
  busyShare: number;
}> {
  const url = new URL(POSTGRES_ADMIN_URL);
  const name = `bench_pgbench_${randomBytes(4).toString('hex')}`;
  const connection = [
    '-h',
    url.hostname,
    '-p',
    url.port || '5432',
    '-U',
    decodeURIComponent(url.username || 'postgres'),
  ];
  const options = {
    env: { ...process.env, ...(url.password ? { PGPASSWORD: decodeURIComponent(url.password) } : {}) },
    maxBuffer: 16 * 2 ** 20,
  };
  const { stdout: version } = await execFileAsync(PGBENCH, ['--version'], { ...options, timeout: 10_000 });
  await adminQuery(`CREATE DATABASE "${name}"`);
  pgbenchDatabase = name;
  ourDatabases.add(name);
  try {
    const initStarted = now();
    await execFileAsync(PGBENCH, ['-i', '-s', '10', '-q', ...connection, name], {
      ...options,
      timeout: 240_000,
    });
    log(`pgbench -i -s 10 in ${seconds(now() - initStarted)} (database ${name}, not timed)`);
    const window = openCpuWindow('the pgbench baseline');
    const { stdout } = await execFileAsync(
      PGBENCH,
      ['-N', '-c', '4', '-j', '2', '-T', '20', ...connection, name],
      { ...options, timeout: 120_000 },
    );
    const whole = machineUse(window);
    closeCpuWindow(window);
    const match = /^tps = ([\d.]+)(.*)$/m.exec(stdout);
    if (!match) throw new Error(`no tps line in pgbench's output:\n${stdout}`);
    const failed = /number of failed transactions: (\d+)/.exec(stdout);
    if (failed && Number(failed[1]) > 0)
      observations.push(`pgbench reported ${failed[1]} failed transactions`);
    const processed = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? NaN);
    const machinePer1000 = (whole.seconds * 1_000) / processed;
    log(
      `  the whole machine during pgbench: ${machinePer1000.toFixed(2)} CPU-s per 1,000 transactions (${processed.toLocaleString('en-US')} of them), cores ${(whole.share * 100).toFixed(0)}% busy`,
    );
    return {
      tps: Number(match[1]),
      version: version.trim(),
      line: match[0].trim(),
      machinePer1000,
      busyShare: whole.share,
    };
  } finally {
    pgbenchDatabase = undefined;
    await adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  }
}

// ---------------------------------------------------------------------------------------------
// The API, tenants and the database.

async function call(method: string, path: string, key: string, body?: unknown): Promise<Json> {
  if (!api) throw new Error('the API is not running');
  return callApi(api.url, key, method, path, body, { timeoutMs: REQUEST_TIMEOUT_MS });
}

function database(): Client {
  if (!db) throw new Error('no database connection');
  return db;
}

/** The Postgres clock, in epoch milliseconds with microseconds. */
async function databaseNow(): Promise<number> {
  const { rows } = await database().query(
    `SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms`,
  );
  return rows[0].ms;
}

interface Tenant {
  key: string;
  service(name: string, pace: Json): Promise<string>;
  contacts(contacts: { email: string; tags: string[] }[]): Promise<void>;
  task(name: string, tag: string): Promise<{ id: string; total: number }>;
}

async function tenant(adminKey: string, name: string): Promise<Tenant> {
  const account = await call('POST', '/api/v1/accounts', adminKey, { name });
  const key = account.apiKey as string;
  if (!key) throw new Error(`POST /api/v1/accounts gave no apiKey: ${JSON.stringify(account).slice(0, 300)}`);
  return {
    key,
    service: async (serviceName, pace) =>
      (
        await call('POST', '/api/v1/services', key, {
          name: serviceName,
          provider: 'sandbox',
          from: { email: 'news@example.com' },
          pace,
          options: { latencyMs: 0, callbacks: { delivered: 0 } },
        })
      ).id as string,
    contacts: async (contacts) => {
      for (let start = 0; start < contacts.length; start += CONTACT_BATCH)
        await call('POST', '/api/v1/contacts', key, {
          contacts: contacts.slice(start, start + CONTACT_BATCH),
        });
    },
    task: async (taskName, tag) => {
      const answer = await call('POST', '/api/v1/tasks', key, {
        name: taskName,
        subject: 'Bench',
        text: 'Hello from the dispatch bench.',
        recipients: { tags: [tag] },
      });
      return { id: answer.id as string, total: (answer.counts as { total: number }).total };
    },
  };
}

async function taskStatus(taskId: string): Promise<string | undefined> {
  const { rows } = await database().query(`SELECT status FROM tasks WHERE id = $1`, [taskId]);
  return rows[0]?.status;
}

async function statusCounts(taskId: string): Promise<Record<string, number>> {
  const { rows } = await database().query(
    `SELECT status, count(*)::int AS n FROM sub_tasks WHERE task_id = $1 GROUP BY status ORDER BY status`,
    [taskId],
  );
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

/** One row per sub-task of the task that the sandbox accepted; first and last acceptance (ms). */
async function sandboxOf(taskId: string) {
  const { rows } = await database().query(
    `SELECT count(m.idempotency_key)::int AS rows,
            count(DISTINCT m.idempotency_key)::int AS keys,
            count(DISTINCT m.recipient)::int AS recipients,
            count(*) FILTER (WHERE m.accepts > 1)::int AS accepted_twice,
            (extract(epoch FROM min(m.accepted_at)) * 1000)::float8 AS first,
            (extract(epoch FROM max(m.accepted_at)) * 1000)::float8 AS last
       FROM sub_tasks s JOIN sandbox_messages m ON m.idempotency_key = s.id::text
      WHERE s.task_id = $1`,
    [taskId],
  );
  return rows[0] as {
    rows: number;
    keys: number;
    recipients: number;
    accepted_twice: number;
    first: number | null;
    last: number | null;
  };
}

async function sandboxTotal(): Promise<number> {
  const { rows } = await database().query(`SELECT count(*)::int AS n FROM sandbox_messages`);
  return rows[0].n;
}

/** The events of a task's sub-tasks by type: anything but Leased/Sending/Sent is worth a look. */
async function eventProfile(taskId: string): Promise<Record<string, number>> {
  const { rows } = await database().query(
    `SELECT type, count(*)::int AS n FROM events WHERE data->>'taskId' = $1 GROUP BY type ORDER BY type`,
    [taskId],
  );
  return Object.fromEntries(rows.map((r) => [r.type, r.n]));
}

/** Relay lag (events not yet published) and the dispatchers' bus backlog (its durables, summed). */
async function backlog(): Promise<{ relay: number; bus: number }> {
  const { rows } = await database().query(
    `SELECT (SELECT count(*) FROM events)::bigint - coalesce((SELECT published FROM relay_checkpoints WHERE name = 'main'), 0)::bigint AS lag`,
  );
  let bus = 0;
  if (nc && env) {
    const jsm = await jetstreamManager(nc);
    for (const { durable } of BUS_SUBSCRIPTIONS.dispatcher) {
      const info = await jsm.consumers.info(env.stream, durable).catch(() => undefined);
      bus += info ? info.num_pending + info.num_ack_pending : 0;
    }
  }
  return { relay: Number(rows[0].lag), bus };
}

async function waitQuiet(what: string): Promise<void> {
  const started = now();
  const first = await backlog();
  try {
    await waitFor(
      `${what}: relay and bus drained`,
      async () => {
        const b = await backlog();
        return b.relay === 0 && b.bus === 0;
      },
      DRAIN_TIMEOUT_MS,
      200,
    );
    const took = now() - started;
    log(
      `  ${what}: relay lag ${first.relay}, dispatcher bus backlog ${first.bus}; drained in ${seconds(took)}`,
    );
    if (took > 5_000)
      observations.push(
        `${what}: the relay/bus took ${seconds(took)} to drain (relay lag ${first.relay}, dispatcher consumer backlog ${first.bus} messages)`,
      );
  } catch (error) {
    const b = await backlog();
    observations.push(
      `${what}: still not drained after ${seconds(DRAIN_TIMEOUT_MS)} (relay lag ${b.relay}, bus ${b.bus})`,
    );
    log(`  warning: ${String(error)}; going on`);
  }
}

/** Warn and error lines a process logged (LOG_LEVEL=warn), grouped by message. */
function logSummary(text: string): string[] {
  const counts = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let key: string;
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string; error?: string };
      if (entry.level !== 'warn' && entry.level !== 'error') continue;
      key = `${entry.level}: ${entry.msg}${entry.error ? ` (${String(entry.error).slice(0, 160)})` : ''}`;
    } catch {
      key = `raw: ${line.slice(0, 200)}`;
    }
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${n}x ${k}`);
}

// ---------------------------------------------------------------------------------------------
// Part 1: throughput.

interface ThroughputResult {
  processes: number;
  ms: number;
  perSecond: number;
  sendWindowMs: number;
  firstAfterResponseMs: number;
  postMs: number;
}

async function throughputRun(
  t: Tenant,
  tag: string,
  processes: number,
  run: number,
  dispatcherEnv: Record<string, string>,
): Promise<ThroughputResult> {
  dispatchers.push(
    ...(await Promise.all(
      Array.from({ length: processes }, () => startService('dispatcher', dispatcherEnv)),
    )),
  );
  log(
    `run ${run}: ${processes} dispatcher(s) started (pids ${dispatchers.map((d) => d.process.pid).join(', ')})`,
  );
  await sleep(1_000);
  const posted = now();
  const task = await t.task(`throughput ${run}`, tag);
  const responded = now();
  if (task.total !== CONTACTS) throw new Error(`counts.total is ${task.total}, expected ${CONTACTS}`);
  const respondedAt = await databaseNow();
  const window = openCpuWindow(`throughput run ${run}`);
  const { rows: wal } = await database().query(`SELECT pg_current_wal_lsn()::text AS lsn`);
  log(`run ${run}: task ${task.id} created in ${seconds(responded - posted)} (POST, not part of the figure)`);

  let lastProgress = now();
  let lastSample = 0;
  let samples = 0;
  const waits = new Map<string, number>();
  const lockWaits = new Map<string, number>();
  let completedAt: number | undefined;
  try {
    await waitFor(
      'the task to complete',
      async () => {
        const status = await taskStatus(task.id);
        if (status === 'completed') return (completedAt = now());
        if (now() - lastSample >= 1_000) {
          // What the environment's busy backends are doing, once a second.
          lastSample = now();
          samples += 1;
          const { rows } = await database().query(
            `SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS wait,
                    CASE WHEN wait_event_type = 'Lock' THEN left(regexp_replace(query, '\\s+', ' ', 'g'), 60) END AS query,
                    count(*)::int AS n
               FROM pg_stat_activity
              WHERE datname = current_database() AND state <> 'idle' AND pid <> pg_backend_pid()
                AND backend_type = 'client backend'
              GROUP BY 1, 2`,
          );
          for (const r of rows) {
            waits.set(r.wait, (waits.get(r.wait) ?? 0) + r.n);
            if (r.query) lockWaits.set(r.query, (lockWaits.get(r.query) ?? 0) + r.n);
          }
        }
        if (now() - lastProgress >= 10_000) {
          lastProgress = now();
          const { rows } = await database().query(
            `SELECT count(*)::int AS n FROM sub_tasks WHERE task_id = $1 AND status = 'sent'`,
            [task.id],
          );
          log(`  ${seconds(now() - responded)}: ${rows[0].n.toLocaleString('en-US')} sent`);
        }
        return undefined;
      },
      DISPATCH_TIMEOUT_MS,
      100,
    );
  } catch (error) {
    problems.push(
      `throughput run ${run}: ${String(error)}; counts ${JSON.stringify(await statusCounts(task.id))}`,
    );
  }
  const ms = (completedAt ?? now()) - responded;
  closeCpuWindow(window);
  await logCost(
    window,
    wal[0].lsn,
    CONTACTS,
    dispatchers.map((d) => d.process.pid!),
  );
  const waitProfile = [...waits]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 6)
    .map(([wait, n]) => `${wait} ${(n / Math.max(1, samples)).toFixed(1)}`)
    .join(', ');
  log(`  busy backends of the environment, mean per 1 s sample (${samples} samples): ${waitProfile}`);
  if (lockWaits.size)
    log(
      `  waiting for a lock, by statement (backends summed over the samples): ${[...lockWaits]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 4)
        .map(([query, n]) => `${n}x "${query}"`)
        .join('; ')}`,
    );

  const answer = await call('GET', `/api/v1/tasks/${task.id}`, t.key);
  const counts = answer.counts as Record<string, number>;
  if (answer.status !== 'completed' || counts.sent !== CONTACTS)
    problems.push(
      `throughput run ${run}: GET says status ${String(answer.status)}, sent ${counts.sent} (expected completed, ${CONTACTS})`,
    );
  const byStatus = await statusCounts(task.id);
  if (byStatus.sent !== CONTACTS || Object.keys(byStatus).length !== 1)
    problems.push(
      `throughput run ${run}: sub-tasks by status ${JSON.stringify(byStatus)}, expected all sent`,
    );
  const sandbox = await sandboxOf(task.id);
  const total = await sandboxTotal();
  if (
    sandbox.rows !== CONTACTS ||
    sandbox.keys !== CONTACTS ||
    sandbox.recipients !== CONTACTS ||
    sandbox.accepted_twice !== 0 ||
    total !== CONTACTS * run
  )
    problems.push(
      `throughput run ${run}: sandbox_messages ${JSON.stringify(sandbox)}, ${total} rows in all (expected ${CONTACTS} of this task, ${CONTACTS * run} in all, none twice)`,
    );
  const events = await eventProfile(task.id);
  const unexpected = Object.entries(events).filter(
    ([type]) =>
      ![
        'TaskCreated',
        'SubTasksMaterialised',
        'SubTaskBatchLeased',
        'SubTaskBatchSent',
        'TaskCompleted',
      ].includes(type),
  );
  if (unexpected.length)
    observations.push(
      `throughput run ${run}: unexpected events for the task: ${JSON.stringify(Object.fromEntries(unexpected))}`,
    );
  const { rows: actors } = await database().query(
    `SELECT metadata->>'actor' AS actor, sum(jsonb_array_length(data->'sent'))::int AS n FROM events
      WHERE type = 'SubTaskBatchSent' AND data->>'taskId' = $1 GROUP BY 1 ORDER BY 2 DESC`,
    [task.id],
  );
  const recorded = actors.reduce((sum, r) => sum + r.n, 0);
  if (recorded !== CONTACTS)
    observations.push(
      `throughput run ${run}: ${recorded} sends recorded for ${CONTACTS} sub-tasks (expected one each)`,
    );
  const { rows: perService } = await database().query(
    `SELECT service_id, count(*)::int AS n FROM sub_tasks WHERE task_id = $1 GROUP BY 1 ORDER BY 2 DESC`,
    [task.id],
  );
  const { rows: leases } = await database().query(
    `SELECT count(*)::int AS n, round(avg(c), 1)::float8 AS avg, max(c)::int AS max, coalesce(sum(c), 0)::int AS sum FROM (
       SELECT jsonb_array_length(data->'subTasks') AS c FROM events WHERE type = 'SubTaskBatchLeased' AND data->>'taskId' = $1) b`,
    [task.id],
  );
  if (leases[0].sum !== CONTACTS)
    observations.push(
      `throughput run ${run}: ${leases[0].sum} leases for ${CONTACTS} sub-tasks (expected one each)`,
    );

  const sendWindowMs = (sandbox.last ?? 0) - (sandbox.first ?? 0);
  const result: ThroughputResult = {
    processes,
    ms,
    perSecond: rate(CONTACTS, ms),
    sendWindowMs,
    firstAfterResponseMs: (sandbox.first ?? NaN) - respondedAt,
    postMs: responded - posted,
  };
  log(
    `run ${run}: ${CONTACTS.toLocaleString('en-US')} sent in ${seconds(ms)} = ${fmt(result.perSecond)} ` +
      `(first mail ${millis(result.firstAfterResponseMs)} after the response; first to last acceptance ${seconds(sendWindowMs)} = ${fmt(rate(CONTACTS - 1, sendWindowMs))})`,
  );
  log(
    `  sub-tasks by status ${JSON.stringify(byStatus)}; GET status ${String(answer.status)}, counts.sent ${counts.sent}`,
  );
  log(
    `  sandbox_messages: ${sandbox.rows} rows of this task (${sandbox.keys} keys, ${sandbox.accepted_twice} accepted twice), ${total} in all`,
  );
  log(`  events of the task: ${JSON.stringify(events)}`);
  log(
    `  per service: ${perService.map((r) => r.n).join(' / ')}; sends recorded per dispatcher: ${actors.map((r) => r.n).join(' / ')}`,
  );
  log(`  lease batches: ${leases[0].n}, mean ${leases[0].avg}, largest ${leases[0].max} sub-tasks`);
  const codes = await stopDispatchers();
  log(`run ${run}: dispatcher(s) stopped, exit codes ${codes.join(', ')}`);
  if (codes.some((c) => c !== 0 && c !== null))
    observations.push(`throughput run ${run}: dispatcher exit codes ${codes.join(', ')}`);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Part 2: latency to first mail.

interface LatencyResult {
  fromResponse: number[];
  fromCreated: number[];
  post: number[];
}

async function latency(t: Tenant): Promise<LatencyResult> {
  await t.service('latency', { intervalMs: 0 });
  await t.contacts(
    Array.from({ length: LATENCY_TASKS }, (_, i) => ({
      email: `lat-${i}@bench.example.com`,
      tags: [`lat-${i}`],
    })),
  );
  await sleep(2_000);
  await waitQuiet('before the latency tasks');
  const result: LatencyResult = { fromResponse: [], fromCreated: [], post: [] };
  const window = openCpuWindow('the latency tasks');
  for (let i = 0; i < LATENCY_TASKS; i += 1) {
    await sleep(400 + (i % 5) * 300);
    const posted = now();
    const task = await t.task(`latency ${i}`, `lat-${i}`);
    result.post.push(now() - posted);
    const respondedAt = await databaseNow();
    let row: { at: number; created: number } | undefined;
    try {
      row = await waitFor(
        `the mail of latency task ${i}`,
        async () => {
          const { rows } = await database().query(
            `SELECT (extract(epoch FROM m.accepted_at) * 1000)::float8 AS at,
                    (extract(epoch FROM t.created_at) * 1000)::float8 AS created
               FROM sub_tasks s JOIN sandbox_messages m ON m.idempotency_key = s.id::text JOIN tasks t ON t.id = s.task_id
              WHERE s.task_id = $1`,
            [task.id],
          );
          return rows[0] as { at: number; created: number } | undefined;
        },
        FIRST_MAIL_TIMEOUT_MS,
        5,
      );
    } catch (error) {
      problems.push(`latency task ${i}: ${String(error)}`);
    }
    result.fromResponse.push(row ? row.at - respondedAt : FIRST_MAIL_TIMEOUT_MS);
    result.fromCreated.push(row ? row.at - row.created : FIRST_MAIL_TIMEOUT_MS);
    await waitFor(
      `latency task ${i} to complete`,
      async () => (await taskStatus(task.id)) === 'completed',
      10_000,
      20,
    ).catch((error: unknown) => problems.push(String(error)));
  }
  closeCpuWindow(window);
  const { rows } = await database().query(
    `SELECT count(*)::int AS n FROM sandbox_messages m JOIN sub_tasks s ON m.idempotency_key = s.id::text
       JOIN tasks t ON t.id = s.task_id WHERE t.name LIKE 'latency %'`,
  );
  if (rows[0].n !== LATENCY_TASKS)
    problems.push(`latency: ${rows[0].n} mails accepted, expected ${LATENCY_TASKS}`);
  log(
    `latency, response -> accepted (ms, in order): ${result.fromResponse.map((v) => Math.round(v)).join(' ')}`,
  );
  return result;
}

// ---------------------------------------------------------------------------------------------
// Part 3: pace accuracy.

interface PaceResult {
  intervalMs: number;
  n: number;
  meanGap: number;
  ratio: number;
  minGap: number;
  maxGap: number;
}

async function paceAccuracy(t: Tenant): Promise<PaceResult[]> {
  const services = [];
  for (const intervalMs of PACES)
    services.push({ intervalMs, id: await t.service(`pace-${intervalMs}`, { intervalMs }) });
  await t.contacts(
    Array.from({ length: PACE_RECIPIENTS }, (_, i) => ({
      email: `pace-${i}@bench.example.com`,
      tags: ['pace'],
    })),
  );
  await sleep(2_000);
  await waitQuiet('before the pace task');
  const started = now();
  const window = openCpuWindow('the pace task');
  const task = await t.task('pace', 'pace');
  await waitFor(
    'the pace task to complete',
    async () => (await taskStatus(task.id)) === 'completed',
    60_000,
    50,
  ).catch((error: unknown) => problems.push(String(error)));
  log(`pace task ${task.id}: ${PACE_RECIPIENTS} recipients done in ${seconds(now() - started)}`);
  closeCpuWindow(window);
  const byStatus = await statusCounts(task.id);
  const sandbox = await sandboxOf(task.id);
  if (byStatus.sent !== PACE_RECIPIENTS || sandbox.rows !== PACE_RECIPIENTS || sandbox.accepted_twice !== 0)
    problems.push(`pace: sub-tasks ${JSON.stringify(byStatus)}, sandbox ${JSON.stringify(sandbox)}`);
  const results: PaceResult[] = [];
  for (const service of services) {
    const { rows } = await database().query(
      `SELECT (extract(epoch FROM accepted_at) * 1000)::float8 AS at FROM sandbox_messages WHERE service_id = $1 ORDER BY accepted_at`,
      [service.id],
    );
    const at = rows.map((r) => r.at as number);
    const gaps = at.slice(1).map((v, i) => v - at[i]);
    const meanGap = at.length > 1 ? (at[at.length - 1] - at[0]) / (at.length - 1) : NaN;
    results.push({
      intervalMs: service.intervalMs,
      n: at.length,
      meanGap,
      ratio: meanGap / service.intervalMs,
      minGap: gaps.length ? Math.min(...gaps) : NaN,
      maxGap: gaps.length ? Math.max(...gaps) : NaN,
    });
    log(
      `  pace ${service.intervalMs} ms: ${at.length} mails, gaps (ms) ${gaps.map((g) => g.toFixed(1)).join(' ')}`,
    );
  }
  return results;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const disarm = watchdog(TIME_LIMIT_MS, cleanup);
  const benchStarted = now();
  try {
    log(`bench dispatch: ${machine()}`);
    const builtAt = distStamp();
    log(`dist/ last built ${new Date(builtAt).toISOString()}`);

    log('baseline: pgbench -N -c 4 -j 2 -T 20 on a scratch database (-i -s 10)');
    const pgbench = await pgbenchBaseline();
    log(`baseline: ${pgbench.line} (${pgbench.version})`);

    env = await createTestEnvironment('bench_dispatch');
    ourDatabases.add(new URL(env.databaseUrl).pathname.slice(1));
    log(
      `test environment ${env.id}: database ${new URL(env.databaseUrl).pathname.slice(1)}, stream ${env.stream}`,
    );
    api = await startService('api', env.env);
    log(`API started (pid ${api.process.pid}) at ${api.url}`);
    const home = env.home;
    const adminKey = await waitFor(
      'the admin key file',
      async () => {
        try {
          return readFileSync(join(home, 'admin-key'), 'utf8').trim();
        } catch {
          return undefined;
        }
      },
      30_000,
    );
    db = new Client({ connectionString: env.databaseUrl, application_name: 'bench-dispatch' });
    await db.connect();
    nc = await connect({ servers: env.natsUrl });
    const [{ version }] = (await db.query(`SELECT current_setting('server_version') AS version`)).rows;

    // Part 1: throughput.
    const bulk = await tenant(adminKey, 'bench throughput');
    for (let i = 0; i < THROUGHPUT_SERVICES; i += 1) await bulk.service(`bulk-${i}`, { intervalMs: 0 });
    const tag = `bench-${env.id}`;
    const seeding = now();
    await bulk.contacts(
      Array.from({ length: CONTACTS }, (_, i) => ({ email: `c${i}@bench.example.com`, tags: [tag] })),
    );
    log(
      `${THROUGHPUT_SERVICES} services, ${CONTACTS.toLocaleString('en-US')} contacts in ${seconds(now() - seeding)} (not timed)`,
    );
    await waitQuiet('before throughput run 1');
    const baseEnv = { ...env.env, TRACKING_BASE_URL: 'http://127.0.0.1:9' };
    const tunedEnv = {
      ...baseEnv,
      DISPATCH_MAX_BATCH: String(MAX_BATCH),
      DISPATCH_CONCURRENCY: String(CONCURRENCY),
    };
    const runs: ThroughputResult[] = [await throughputRun(bulk, tag, 1, 1, tunedEnv)];
    if (TWO_DISPATCHERS && runs[0].ms < TWO_DISPATCHERS_IF_UNDER_MS) {
      await waitQuiet('before throughput run 2');
      runs.push(await throughputRun(bulk, tag, 2, 2, tunedEnv));
    } else {
      log(
        `two-dispatcher figure skipped (${TWO_DISPATCHERS ? `run 1 took ${seconds(runs[0].ms)}` : 'BENCH_DISPATCH_TWO=0'})`,
      );
    }

    // Parts 2 and 3: one dispatcher with the production DISPATCH_* defaults.
    dispatchers.push(await startService('dispatcher', baseEnv));
    log(`dispatcher with the DISPATCH_* defaults started (pid ${dispatchers[0].process.pid})`);
    const lat = await latency(await tenant(adminKey, 'bench latency'));
    const paces = await paceAccuracy(await tenant(adminKey, 'bench pace'));
    const codes = await stopDispatchers();
    if (codes.some((c) => c !== 0 && c !== null))
      observations.push(`parts 2-3: dispatcher exit code ${codes.join(', ')}`);

    if (distStamp() !== builtAt)
      observations.push(
        `dist/ was rebuilt during the run (newest file now ${new Date(distStamp()).toISOString()}): processes started after that ran other code`,
      );
    log(`postgres ${version}; ${pgbench.version}; total bench time ${seconds(now() - benchStarted)}`);
    log(
      `part 1 dispatcher settings: DISPATCH_MAX_BATCH=${MAX_BATCH}, DISPATCH_CONCURRENCY=${CONCURRENCY}, other DISPATCH_* and DATABASE_POOL_SIZE at their defaults; ${THROUGHPUT_SERVICES} unpaced sandbox services`,
    );
    if (mailCosts.length)
      log(
        `the whole machine's CPU: ${mailCosts[0].toFixed(2)} CPU-s per 1,000 mails (run 1) against ${pgbench.machinePer1000.toFixed(2)} per 1,000 pgbench transactions = ${(mailCosts[0] / pgbench.machinePer1000).toFixed(2)}x; pgbench kept the cores ${(pgbench.busyShare * 100).toFixed(0)}% busy (where it keeps them busy, 1.0x needs a mail to cost no more than a transaction)`,
      );
    log('parts 2-3: one dispatcher with every DISPATCH_* default (poll 2 s, batch 50, concurrency 32)');
    process.stdout.write('\n');
    printComparison(
      runs.map((r) => ({
        figure: `1. throughput, 100k sub-tasks, ${r.processes} dispatcher${r.processes > 1 ? 's' : ''} (${seconds(r.ms)})`,
        measured: r.perSecond,
        baselineName: 'pgbench -N -c 4 -j 2 -T 20 TPS',
        baseline: pgbench.tps,
        goal: THROUGHPUT_GOAL,
      })),
    );
    process.stdout.write('\n');
    const p50 = percentile(lat.fromResponse, 50);
    const p99 = percentile(lat.fromResponse, 99);
    const rows: string[][] = [
      [
        `2. latency to first mail, ${LATENCY_TASKS} tasks of 1 (POST response -> accepted_at)`,
        `p50 ${millis(p50)}, p99 ${millis(p99)} (min ${millis(Math.min(...lat.fromResponse))})`,
        `p99 < ${millis(LATENCY_GOAL_MS)}`,
        p99 < LATENCY_GOAL_MS ? 'PASS' : 'MISS',
      ],
      [
        '   same, from tasks.created_at (not judged)',
        `p50 ${millis(percentile(lat.fromCreated, 50))}, p99 ${millis(percentile(lat.fromCreated, 99))}; POST p50 ${millis(percentile(lat.post, 50))}`,
        '',
        '',
      ],
    ];
    for (const p of paces) {
      const ok = p.ratio >= 1 && p.ratio <= PACE_RATIO_MAX && p.minGap >= p.intervalMs;
      rows.push([
        `3. pace ${p.intervalMs} ms, ${p.n} mails of ${PACE_RECIPIENTS}`,
        `mean gap ${p.meanGap.toFixed(1)} ms = ${p.ratio.toFixed(3)}x; min gap ${p.minGap.toFixed(1)} ms; max ${p.maxGap.toFixed(1)} ms`,
        `1.00-${PACE_RATIO_MAX.toFixed(2)}x, min >= ${p.intervalMs} ms`,
        ok ? 'PASS' : 'MISS',
      ]);
    }
    printTable(['figure', 'measured', 'goal', 'result'], rows);

    for (const { name, text } of outputs) {
      const summary = logSummary(text);
      if (summary.length) observations.push(`${name} logged: ${summary.slice(0, 6).join('; ')}`);
    }
    if (observations.length) {
      process.stdout.write('\nworth a look:\n');
      for (const o of observations) process.stdout.write(`- ${o}\n`);
    }
    if (problems.length) {
      process.stdout.write('\nbroken:\n');
      for (const p of problems) process.stdout.write(`- ${p}\n`);
      process.exitCode = 1;
    }
  } finally {
    await cleanup();
    disarm();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench dispatch failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  for (const { name, text } of outputs)
    if (text) process.stderr.write(`${name} output (tail):\n${text.slice(-3_000)}\n`);
  process.exitCode = 1;
});
