/**
 * Bench: soak. The four services under a steady load for SOAK_MINUTES after a warm-up, watching
 * each one's resident memory (RSS) and event-loop delay.
 *
 * Run (after `npm run build`, with Postgres on 127.0.0.1:5432 and NATS JetStream on 127.0.0.1:4222):
 *
 *   node -r @swc-node/register bench/soak.ts                                         # about 12 minutes
 *   SOAK_MINUTES=1 SOAK_WARMUP_SECONDS=15 node -r @swc-node/register bench/soak.ts   # smoke check, 2 minutes
 *
 * Against one fresh test environment (own database, stream and subject prefix) the built api,
 * webhook-ingest, dispatcher (TRACKING_BASE_URL = webhook-ingest, so sandbox callbacks come back
 * as webhooks) and monitor (dist/) run as processes, all with their production defaults. One
 * tenant gets SOAK_SERVICES sandbox services, each paced `{ perSecond: SOAK_PER_SECOND }`, options
 * SANDBOX_OPTIONS: 20 ms latency, callbacks delivered 0.95 / open 0.25 / click 0.05, 200 ms
 * apart. A feeder keeps work queued: once a second, while fewer than BACKLOG_SECONDS of the pace
 * are pending, it POSTs TASK_SIZE new contacts with a tag of their own and a task over that tag.
 * So the services send at their pace the whole time, and every mail brings about 1.3 webhooks.
 * The default pace (3 x 15/s, 44/s after the pacer's guard) leaves headroom on 2 cores: there the
 * whole system (Postgres included) carries about 60 mails/s with their webhooks, and a load above
 * what the machine carries would not be steady.
 *
 * Every SOAK_SAMPLE_SECONDS the bench scrapes each service's GET /metrics (prom-client's default
 * metrics, prefix `edm_process_`): edm_process_process_resident_memory_bytes (RSS, VmRSS of
 * /proc/self/status), edm_process_nodejs_heap_size_used_bytes, and the event-loop delay
 * edm_process_nodejs_eventloop_lag_{p50,p99,max,mean}_seconds. prom-client resets that
 * histogram (perf_hooks.monitorEventLoopDelay, 10 ms resolution) on every scrape, so each sample
 * describes the interval since the previous one; nothing else scrapes these processes. An idle
 * loop reads about 10 ms: the sampling timer's period is included. It also reads each process's
 * CPU time from /proc and the backlogs (pending sub-tasks, stored webhooks not yet parsed, mail
 * events not yet matched) from the database; per window it shows the machine's CPU by group (the
 * four services, Postgres backends of the run's database, the bench, everything else), the
 * active relay's lag and the dispatcher's mean pace lag (edm_dispatch_pace_lag_seconds).
 *
 * Baseline: the start of the measured run itself. The goal is "no service's RSS grows more than
 * 20% after warm-up", so each service is compared with its own sample at the end of the warm-up:
 * - growth from samples: last sample / first sample after the warm-up - 1;
 * - growth from medians (judged): median of the samples in the last window / median of those in
 *   the first window - 1, a window being the first and last minute (a third of the run when that is
 *   shorter than 3 minutes). A median over a dozen samples is not moved by where one sample falls
 *   in a garbage-collection cycle; a steady leak moves it all the same;
 * - trend: the least-squares slope of RSS over the measured run, in MiB per minute.
 * Event-loop delay per window: the median of the samples' p50 and p99, the largest max.
 * Throughput in the same run, from the database, per window: mails the sandbox accepted
 * (`sandbox_messages.accepted_at`), webhooks stored (`event_logs.received_at`) and parsed
 * (`event_logs.processed_at`), recipients queued by the feeder; so the load is shown to be steady.
 *
 * A miss is printed, never an exit code; the exit code is 1 only when something breaks (a failed
 * request, a service exiting, a failed scrape) or 2 when the watchdog fires; Ctrl-C (SIGINT) or
 * SIGTERM stops the run, cleans up and exits 130. Only 127.0.0.1 traffic; cleans up after itself
 * (stops the four processes, drops the database, deletes the stream, removes EDM_HOME).
 *
 * Settings (environment): SOAK_MINUTES (10), SOAK_WARMUP_SECONDS (60), SOAK_SERVICES (3),
 * SOAK_PER_SECOND (15, per service), SOAK_SAMPLE_SECONDS (5).
 */
import { readFileSync, rmSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import {
  AppName,
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
  median,
  printTable,
  ProcessCpu,
  processCpu,
  processTree,
  rate,
  waitFor,
  watchdog,
} from './bench-util';

function setting(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  const value = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isFinite(value) || value < min)
    throw new Error(`${name} must be a number >= ${min}, not ${raw}`);
  return value;
}

const MINUTES = setting('SOAK_MINUTES', 10, 0.5);
const WARMUP_MS = setting('SOAK_WARMUP_SECONDS', 60, 0) * 1_000;
const SERVICES = Math.round(setting('SOAK_SERVICES', 3, 1));
const PER_SECOND = setting('SOAK_PER_SECOND', 15, 1);
const SAMPLE_MS = setting('SOAK_SAMPLE_SECONDS', 5, 1) * 1_000;

const MEASURE_MS = MINUTES * 60_000;
/** First and last window of the measured run: a minute, or a third of a run shorter than 3 minutes. */
const WINDOW_MS = Math.min(60_000, MEASURE_MS / 3);
const GOAL_GROWTH = 0.2;
const TASK_SIZE = 300;
const BACKLOG_SECONDS = 15;
const FEED_EVERY_MS = 1_000;
const SANDBOX_OPTIONS = {
  latencyMs: 20,
  callbacks: { delivered: 0.95, open: 0.25, click: 0.05 },
  callbackDelayMs: 200,
};
const APPS: readonly AppName[] = ['api', 'dispatcher', 'webhook-ingest', 'monitor'];
const REQUEST_TIMEOUT_MS = 60_000;
const SCRAPE_TIMEOUT_MS = 4_000;
const STOP_TIMEOUT_MS = 30_000;
const TIME_LIMIT_MS = WARMUP_MS + MEASURE_MS + 15 * 60_000;
const MIB = 2 ** 20;

interface ServiceSample {
  rss: number;
  heapUsed: number;
  lagP50: number;
  lagP99: number;
  lagMax: number;
  lagMean: number;
  /** CPU time so far, in clock ticks (utime + stime from /proc). */
  cpuTicks: number;
}

interface Sample {
  /** Epoch milliseconds, when the scrape started. */
  at: number;
  services: Partial<Record<AppName, ServiceSample>>;
  pendingSubTasks: number;
  unparsedWebhooks: number;
  unmatchedEvents: number;
  relayLag: number;
  /** The dispatcher's edm_dispatch_pace_lag_seconds so far: how late paced requests started. */
  paceLagSum: number;
  paceLagCount: number;
  /** /proc/stat: busy and total clock ticks of the whole machine so far. */
  machineBusy: number;
  machineTotal: number;
  /** Clock ticks used so far by this run's processes, by group (see `cpuGroups`). */
  cpu: Record<CpuGroup, number>;
}

type CpuGroup = 'services' | 'bench' | 'postgres (run db)' | 'others';

const problems: string[] = [];
const observations: string[] = [];
const running = new Map<AppName, ServiceProcess>();
const outputs = new Map<AppName, string>();
const exitCodes = new Map<AppName, number | null | 'killed'>();
const clients = new Set<Client>();
const samples: Sample[] = [];
/** Recipients of every task the feeder created, with the time of the POST's response. */
const queued: { at: number; recipients: number }[] = [];
let env: TestEnvironment | undefined;
let loadRunning = false;
let stopping = false;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (bytes: number) => `${(bytes / MIB).toFixed(1)} MiB`;
const ms1 = (seconds: number) => `${(seconds * 1_000).toFixed(1)} ms`;
const pct = (ratio: number) => `${ratio >= 0 ? '+' : ''}${(ratio * 100).toFixed(1)}%`;
const clock = (epochMs: number) => new Date(epochMs).toISOString().slice(11, 19);

// ---------------------------------------------------------------------------------------------
// Processes, the database and cleanup.

async function stopService(app: AppName): Promise<void> {
  const service = running.get(app);
  if (!service) return;
  running.delete(app);
  const code = await Promise.race([
    service.stop(),
    new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), STOP_TIMEOUT_MS)),
  ]);
  outputs.set(app, service.output());
  if (code === 'timeout') {
    await service.kill();
    exitCodes.set(app, 'killed');
  } else exitCodes.set(app, code);
}

async function connect(url: string, name: string): Promise<Client> {
  const client = new Client({ connectionString: url, application_name: name });
  await client.connect();
  clients.add(client);
  return client;
}

let cleaning: Promise<void> | undefined;

/** Idempotent: the end of the run, an error, the watchdog and a signal may all ask for it. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    loadRunning = false;
    stopping = true;
    // The load's source first, the event consumers last.
    for (const app of ['api', 'dispatcher', 'webhook-ingest', 'monitor'] as const)
      await stopService(app).catch(() => undefined);
    for (const client of [...clients]) await client.end().catch(() => undefined);
    clients.clear();
    const environment = env;
    env = undefined;
    if (environment) {
      await environment.dispose().catch((error: unknown) => log(`dispose failed: ${String(error)}`));
      rmSync(environment.home, { recursive: true, force: true });
    }
  })();
  return cleaning;
}

function onSignal(signal: NodeJS.Signals): void {
  process.stderr.write(`bench soak: ${signal}, stopping the services and removing the environment\n`);
  const forced = setTimeout(() => process.exit(130), 2 * STOP_TIMEOUT_MS + 30_000);
  forced.unref();
  cleanup()
    .catch((error: unknown) => process.stderr.write(`bench soak: cleanup failed: ${String(error)}\n`))
    .finally(() => process.exit(130));
}

/** Newest modification time of the four services' entry points: every build rewrites them. */
function distStamp(): number {
  return Math.max(
    ...APPS.map(
      (app) =>
        statSync(resolve(__dirname, '../dist/apps', app, 'src/main.js'), { throwIfNoEntry: false })
          ?.mtimeMs ?? 0,
    ),
  );
}

/** Busy and total clock ticks of all cores so far, from the first line of /proc/stat. */
function machineTicks(): { busy: number; total: number } {
  try {
    const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
    const ticks = fields.slice(0, 8).map(Number);
    const total = ticks.reduce((a, b) => a + b, 0);
    return { busy: total - ticks[3] - ticks[4], total };
  } catch {
    return { busy: NaN, total: NaN };
  }
}

/** Postgres' and NATS' own processes, shared by everyone: counted in no group. */
const SHARED_PROCESS =
  /^postgres: .*(checkpointer|background writer|walwriter|autovacuum|logical replication|archiver|wal sender|wal receiver)|bin\/postgres|nats-server/;
let lastSnapshot: Map<number, ProcessCpu> | undefined;
const cpuSoFar: Record<CpuGroup, number> = { services: 0, bench: 0, 'postgres (run db)': 0, others: 0 };

/**
 * CPU ticks since the previous call, by group: the four services, this process, the Postgres
 * backends of the run's database, and every other process (other programs, other databases'
 * backends) apart from Postgres' and NATS' own. A process that ended in between is not seen.
 */
function cpuGroups(database: string): Record<CpuGroup, number> {
  const snapshot = processCpu();
  const services = new Set<number>();
  for (const service of running.values())
    if (service.process.pid) for (const pid of processTree(snapshot, service.process.pid)) services.add(pid);
  if (lastSnapshot)
    for (const [pid, p] of snapshot) {
      const used = p.ticks - (lastSnapshot.get(pid)?.ticks ?? 0);
      if (used <= 0) continue;
      const group: CpuGroup | undefined = services.has(pid)
        ? 'services'
        : pid === process.pid
          ? 'bench'
          : p.command.startsWith('postgres:') && p.command.includes(` ${database} `)
            ? 'postgres (run db)'
            : !p.command || SHARED_PROCESS.test(p.command)
              ? undefined
              : 'others';
      if (group) cpuSoFar[group] += used;
    }
  lastSnapshot = snapshot;
  return { ...cpuSoFar };
}

/** utime + stime of one process in clock ticks, from /proc/<pid>/stat; NaN when it is gone. */
function cpuTicksOf(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return NaN;
  }
}

// ---------------------------------------------------------------------------------------------
// The API.

async function call(method: string, path: string, key: string, body?: unknown): Promise<Json> {
  const api = running.get('api');
  if (!api) throw new Error('the API is not running');
  return callApi(api.url, key, method, path, body, { timeoutMs: REQUEST_TIMEOUT_MS });
}

// ---------------------------------------------------------------------------------------------
// The load: keeps BACKLOG_SECONDS of the services' pace pending.

async function feed(key: string, db: Client): Promise<void> {
  const target = BACKLOG_SECONDS * SERVICES * PER_SECOND;
  let n = 0;
  let failures = 0;
  while (loadRunning) {
    const started = Date.now();
    try {
      const { rows } = await db.query(`SELECT count(*)::int AS n FROM sub_tasks WHERE status = 'pending'`);
      if (rows[0].n < target) {
        n += 1;
        const tag = `soak-${n}`;
        await call('POST', '/api/v1/contacts', key, {
          contacts: Array.from({ length: TASK_SIZE }, (_, i) => ({
            email: `s${n}-${i}@soak.example.com`,
            name: `Soak ${n}-${i}`,
            tags: [tag],
          })),
        });
        const task = await call('POST', '/api/v1/tasks', key, {
          name: `soak ${n}`,
          subject: 'Soak {{name}}',
          html: `<p>Hello {{name}}, <a href="https://example.com/soak/${n}">read more</a>.</p>`,
          recipients: { tags: [tag] },
        });
        const total = (task.counts as { total?: number } | undefined)?.total;
        if (total !== TASK_SIZE)
          problems.push(`task soak ${n} has ${String(total)} recipients, not ${TASK_SIZE}`);
        queued.push({ at: Date.now(), recipients: total ?? 0 });
      }
    } catch (error) {
      if (!loadRunning) return;
      failures += 1;
      problems.push(`feeder: ${String(error)}`);
      if (failures >= 5)
        throw new Error(`the feeder failed ${failures} times; last: ${String(error)}`, { cause: error });
    }
    await sleep(Math.max(0, FEED_EVERY_MS - (Date.now() - started)));
  }
}

// ---------------------------------------------------------------------------------------------
// Samples.

/** Values of a Prometheus text exposition, keyed by name plus any labels but `service`. */
function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = (match[2] ?? '')
      .split(/,(?=[a-zA-Z_]\w*=")/)
      .filter((label) => label && !label.startsWith('service='))
      .join(',');
    values.set(labels ? `${match[1]}{${labels}}` : match[1], Number(match[3]));
  }
  return values;
}

async function scrape(
  app: AppName,
): Promise<{ sample: ServiceSample; relayLag: number; values: Map<string, number> }> {
  const service = running.get(app);
  if (!service) throw new Error(`${app} is not running`);
  if (service.process.exitCode !== null)
    throw new Error(
      `${app} exited with code ${service.process.exitCode}:\n${service.output().slice(-3_000)}`,
    );
  const response = await fetch(`${service.url}/metrics`, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) });
  if (response.status !== 200) throw new Error(`${app} GET /metrics answered ${response.status}`);
  const values = parseMetrics(await response.text());
  const value = (name: string) => {
    const v = values.get(name);
    if (v === undefined) throw new Error(`${app} /metrics has no ${name}`);
    return v;
  };
  return {
    sample: {
      rss: value('edm_process_process_resident_memory_bytes'),
      heapUsed: value('edm_process_nodejs_heap_size_used_bytes'),
      lagP50: value('edm_process_nodejs_eventloop_lag_p50_seconds'),
      lagP99: value('edm_process_nodejs_eventloop_lag_p99_seconds'),
      lagMax: value('edm_process_nodejs_eventloop_lag_max_seconds'),
      lagMean: value('edm_process_nodejs_eventloop_lag_mean_seconds'),
      cpuTicks: cpuTicksOf(service.process.pid),
    },
    relayLag: values.get('edm_relay_active') === 1 ? (values.get('edm_relay_lag_events') ?? 0) : 0,
    values,
  };
}

async function takeSample(db: Client, database: string): Promise<Sample> {
  const at = Date.now();
  const cpu = machineTicks();
  const groups = cpuGroups(database);
  const scraped = await Promise.all(APPS.map(async (app) => [app, await scrape(app)] as const));
  const { rows } = await db.query(
    `SELECT (SELECT count(*) FROM sub_tasks WHERE status = 'pending')::int AS pending,
            (SELECT count(*) FROM event_logs WHERE status = 'received')::int AS unparsed,
            (SELECT count(*) FROM mail_events WHERE match_status = 'pending')::int AS unmatched`,
  );
  const dispatcherValues = scraped.find(([app]) => app === 'dispatcher')![1].values;
  return {
    at,
    services: Object.fromEntries(scraped.map(([app, s]) => [app, s.sample])),
    pendingSubTasks: rows[0].pending,
    unparsedWebhooks: rows[0].unparsed,
    unmatchedEvents: rows[0].unmatched,
    relayLag: Math.max(...scraped.map(([, s]) => s.relayLag)),
    paceLagSum: dispatcherValues.get('edm_dispatch_pace_lag_seconds_sum') ?? 0,
    paceLagCount: dispatcherValues.get('edm_dispatch_pace_lag_seconds_count') ?? 0,
    machineBusy: cpu.busy,
    machineTotal: cpu.total,
    cpu: groups,
  };
}

/** Samples every SAMPLE_MS on a fixed grid until `until`; a failed scrape ends the run. */
async function sampleUntil(
  db: Client,
  database: string,
  until: number,
  onSample?: (s: Sample) => void,
): Promise<void> {
  let next = samples.length ? samples[samples.length - 1].at + SAMPLE_MS : Date.now();
  while (next <= until && !stopping) {
    await sleep(Math.max(0, next - Date.now()));
    if (stopping) return;
    const sample = await takeSample(db, database);
    samples.push(sample);
    onSample?.(sample);
    next += SAMPLE_MS;
    while (next < Date.now()) next += SAMPLE_MS;
  }
}

// ---------------------------------------------------------------------------------------------
// Analysis.

/** Least-squares slope of y over x. */
function slope(points: readonly { x: number; y: number }[]): number {
  if (points.length < 2) return NaN;
  const mx = points.reduce((s, p) => s + p.x, 0) / points.length;
  const my = points.reduce((s, p) => s + p.y, 0) / points.length;
  const num = points.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0);
  const den = points.reduce((s, p) => s + (p.x - mx) ** 2, 0);
  return den ? num / den : NaN;
}

/** Rows of a table per window of `bucketMs` from `start`: count(*) of `timestampColumn`, epoch ms. */
async function perBucket(
  db: Client,
  table: string,
  timestampColumn: string,
  start: number,
  bucketMs: number,
): Promise<Map<number, number>> {
  const { rows } = await db.query(
    `SELECT floor((extract(epoch FROM ${timestampColumn}) * 1000 - $1) / $2)::int AS bucket, count(*)::int AS n
       FROM ${table} WHERE ${timestampColumn} IS NOT NULL GROUP BY 1`,
    [start, bucketMs],
  );
  return new Map(rows.map((r) => [r.bucket as number, r.n as number]));
}

interface Window {
  label: string;
  from: number;
  to: number;
}

async function report(
  db: Client,
  loadStart: number,
  measureStart: number,
  measureEnd: number,
): Promise<void> {
  const measured = samples.filter((s) => s.at >= measureStart && s.at <= measureEnd);
  if (measured.length < 2) throw new Error(`only ${measured.length} samples after the warm-up`);
  const first = measured.filter((s) => s.at < measureStart + WINDOW_MS);
  const last = measured.filter((s) => s.at > measureEnd - WINDOW_MS);
  const windowText = `${Math.round(WINDOW_MS / 1_000)} s`;
  const hz = clockTicks();
  const cpuShare = (app: AppName, from: Sample[]) => {
    const a = from[0].services[app]!;
    const b = from[from.length - 1].services[app]!;
    const seconds = (from[from.length - 1].at - from[0].at) / 1_000;
    return seconds > 0 ? `${(((b.cpuTicks - a.cpuTicks) / hz / seconds) * 100).toFixed(0)}%` : '-';
  };

  // Memory.
  const growth: { app: AppName; byMedians: number; bySamples: number }[] = [];
  const memoryRows: string[][] = [];
  for (const app of APPS) {
    const of = (list: Sample[], f: (s: ServiceSample) => number) => list.map((s) => f(s.services[app]!));
    const start = measured[0].services[app]!;
    const end = measured[measured.length - 1].services[app]!;
    const firstRss = median(of(first, (s) => s.rss));
    const lastRss = median(of(last, (s) => s.rss));
    const byMedians = lastRss / firstRss - 1;
    const bySamples = end.rss / start.rss - 1;
    growth.push({ app, byMedians, bySamples });
    const trend = slope(
      measured.map((s) => ({ x: (s.at - measureStart) / 60_000, y: s.services[app]!.rss / MIB })),
    );
    memoryRows.push([
      app,
      mib(start.rss),
      mib(end.rss),
      pct(bySamples),
      mib(firstRss),
      mib(lastRss),
      pct(byMedians),
      `${trend >= 0 ? '+' : ''}${trend.toFixed(2)} MiB/min`,
      `${mib(median(of(first, (s) => s.heapUsed)))} -> ${mib(median(of(last, (s) => s.heapUsed)))}`,
      byMedians <= GOAL_GROWTH ? 'MET' : 'MISS',
    ]);
  }

  // Event-loop delay and CPU.
  const lagRows: string[][] = [];
  for (const app of APPS) {
    for (const [label, list] of [
      [`first ${windowText}`, first],
      [`last ${windowText}`, last],
    ] as const) {
      const of = (f: (s: ServiceSample) => number) => list.map((s) => f(s.services[app]!));
      lagRows.push([
        label === `first ${windowText}` ? app : '',
        label,
        String(list.length),
        ms1(median(of((s) => s.lagP50))),
        ms1(median(of((s) => s.lagP99))),
        ms1(Math.max(...of((s) => s.lagMax))),
        ms1(of((s) => s.lagMean).reduce((a, b) => a + b, 0) / list.length),
        cpuShare(app, list),
      ]);
    }
  }

  // Throughput per window, from the database.
  const buckets = Math.ceil((measureEnd - measureStart) / WINDOW_MS - 1e-9);
  const mails = await perBucket(db, 'sandbox_messages', 'accepted_at', measureStart, WINDOW_MS);
  const stored = await perBucket(db, 'event_logs', 'received_at', measureStart, WINDOW_MS);
  const parsed = await perBucket(db, 'event_logs', 'processed_at', measureStart, WINDOW_MS);
  const { rows: warm } = await db.query(
    `SELECT (SELECT count(*) FROM sandbox_messages WHERE accepted_at >= to_timestamp($1 / 1000.0) AND accepted_at < to_timestamp($2 / 1000.0))::int AS mails,
            (SELECT count(*) FROM event_logs WHERE received_at >= to_timestamp($1 / 1000.0) AND received_at < to_timestamp($2 / 1000.0))::int AS stored,
            (SELECT count(*) FROM event_logs WHERE processed_at >= to_timestamp($1 / 1000.0) AND processed_at < to_timestamp($2 / 1000.0))::int AS parsed`,
    [loadStart, measureStart],
  );
  const windows: Window[] = [];
  if (measureStart > loadStart) windows.push({ label: 'warm-up', from: loadStart, to: measureStart });
  for (let b = 0; b < buckets; b += 1)
    windows.push({
      label: `${b + 1}`,
      from: measureStart + b * WINDOW_MS,
      to: Math.min(measureEnd, measureStart + (b + 1) * WINDOW_MS),
    });
  const near = (w: Window) => samples.filter((s) => s.at >= w.from && s.at <= w.to);
  const throughputRows = windows.map((w, i) => {
    const ms = w.to - w.from;
    const bucket = i - (windows[0].label === 'warm-up' ? 1 : 0);
    const counts =
      w.label === 'warm-up'
        ? { mails: warm[0].mails, stored: warm[0].stored, parsed: warm[0].parsed }
        : { mails: mails.get(bucket) ?? 0, stored: stored.get(bucket) ?? 0, parsed: parsed.get(bucket) ?? 0 };
    const inWindow = near(w);
    const atEnd = inWindow[inWindow.length - 1];
    const from = samples.filter((s) => s.at <= w.from).pop() ?? inWindow[0];
    const paceLag =
      atEnd && from && atEnd.paceLagCount > from.paceLagCount
        ? ms1((atEnd.paceLagSum - from.paceLagSum) / (atEnd.paceLagCount - from.paceLagCount))
        : '-';
    const busy =
      atEnd && from && atEnd.machineTotal > from.machineTotal
        ? `${(((atEnd.machineBusy - from.machineBusy) / (atEnd.machineTotal - from.machineTotal)) * 100).toFixed(0)}%`
        : '-';
    const seconds = atEnd && from ? (atEnd.at - from.at) / 1_000 : 0;
    const share = (group: CpuGroup) =>
      seconds > 0 ? `${(((atEnd.cpu[group] - from.cpu[group]) / hz / seconds) * 100).toFixed(0)}` : '-';
    const groups = `${share('services')} / ${share('postgres (run db)')} / ${share('bench')} / ${share('others')}`;
    const recipients = queued
      .filter((q) => q.at >= w.from && q.at < w.to)
      .reduce((s, q) => s + q.recipients, 0);
    return [
      w.label,
      `${clock(w.from)}-${clock(w.to)}`,
      fmt(rate(recipients, ms)),
      fmt(rate(counts.mails, ms)),
      fmt(rate(counts.stored, ms)),
      fmt(rate(counts.parsed, ms)),
      atEnd ? String(atEnd.pendingSubTasks) : '-',
      atEnd ? `${atEnd.unparsedWebhooks} / ${atEnd.unmatchedEvents}` : '-',
      atEnd ? String(atEnd.relayLag) : '-',
      paceLag,
      busy,
      groups,
      ...APPS.map((app) => (inWindow.length ? mib(median(inWindow.map((s) => s.services[app]!.rss))) : '-')),
    ];
  });
  const total = (m: Map<number, number>) =>
    [...m].filter(([b]) => b >= 0 && b < buckets).reduce((s, [, n]) => s + n, 0);
  const measureMs = measureEnd - measureStart;
  const mailsRate = rate(total(mails), measureMs);
  const storedRate = rate(total(stored), measureMs);
  const firstMails = rate(mails.get(0) ?? 0, WINDOW_MS);
  const lastBucketMs = measureEnd - (measureStart + (buckets - 1) * WINDOW_MS);
  const lastMails = rate(mails.get(buckets - 1) ?? 0, lastBucketMs);
  const firstStored = rate(stored.get(0) ?? 0, WINDOW_MS);
  const lastStored = rate(stored.get(buckets - 1) ?? 0, lastBucketMs);
  const { rows: perService } = await db.query(
    `SELECT count(*)::int AS n FROM sandbox_messages
      WHERE accepted_at >= to_timestamp($1 / 1000.0) AND accepted_at < to_timestamp($2 / 1000.0)
      GROUP BY service_id ORDER BY 1 DESC`,
    [measureStart, measureEnd],
  );
  const paceRate = (SERVICES * 1_000) / (1_000 / PER_SECOND + Math.min(5, (1_000 / PER_SECOND) * 0.02));

  process.stdout.write('\n');
  log(
    `measured ${clock(measureStart)}-${clock(measureEnd)} UTC (${(measureMs / 60_000).toFixed(1)} min after a ${Math.round((measureStart - loadStart) / 1_000)} s warm-up), ${measured.length} samples every ${SAMPLE_MS / 1_000} s`,
  );
  log(
    `baseline: each service's own state at the end of the warm-up (first sample at ${clock(measured[0].at)}); windows: first and last ${windowText}`,
  );
  process.stdout.write('\nResident memory (RSS, edm_process_process_resident_memory_bytes)\n');
  printTable(
    [
      'service',
      'RSS at warm-up end (baseline)',
      'RSS at end',
      'growth',
      `median first ${windowText}`,
      `median last ${windowText}`,
      'growth of medians (judged)',
      'trend',
      'heap used (medians)',
      'goal <= +20%',
    ],
    memoryRows,
  );
  process.stdout.write(
    '\nEvent-loop delay (edm_process_nodejs_eventloop_lag_*; an idle loop reads ~10 ms) and CPU\n',
  );
  printTable(
    ['service', 'window', 'samples', 'p50 (median)', 'p99 (median)', 'max', 'mean', 'CPU (% of a core)'],
    lagRows,
  );
  process.stdout.write(
    `\nThroughput per ${windowText} window, from the database (rates per second); backlog and RSS medians per window\n`,
  );
  printTable(
    [
      'window',
      'UTC',
      'queued',
      'mails sent',
      'webhooks stored',
      'webhooks parsed',
      'pending sub-tasks',
      'unparsed / unmatched',
      'relay lag',
      'pace lag (mean)',
      'machine CPU busy',
      'CPU % of a core: services / run db / bench / others',
      ...APPS.map((app) => `RSS ${app}`),
    ],
    throughputRows,
  );
  process.stdout.write('\n');
  log(
    `load over the measured run: ${fmt(mailsRate)} mails sent (pace ${fmt(paceRate)}: ${SERVICES} x ${PER_SECOND}/s less the pacer's 2% guard), ${fmt(storedRate)} webhooks stored (${(storedRate / mailsRate).toFixed(2)} per mail); per service ${perService.map((r) => fmt(rate(r.n, measureMs))).join(' / ')}`,
  );
  log(
    `steadiness: mails sent ${fmt(firstMails)} in the first window, ${fmt(lastMails)} in the last; webhooks stored ${fmt(firstStored)} -> ${fmt(lastStored)}`,
  );
  const firstSample = measured[0];
  const lastSample = measured[measured.length - 1];
  const measuredSeconds = (lastSample.at - firstSample.at) / 1_000;
  const cores = cpus().length;
  const groupShare = (group: CpuGroup) =>
    (lastSample.cpu[group] - firstSample.cpu[group]) / hz / measuredSeconds / cores;
  log(
    `CPU over the measured run, share of the ${cores} cores: machine busy ${(((lastSample.machineBusy - firstSample.machineBusy) / (lastSample.machineTotal - firstSample.machineTotal)) * 100).toFixed(0)}%; ` +
      `the four services ${(groupShare('services') * 100).toFixed(0)}%, Postgres for the run's database ${(groupShare('postgres (run db)') * 100).toFixed(0)}%, ` +
      `the bench ${(groupShare('bench') * 100).toFixed(0)}%, other processes ${(groupShare('others') * 100).toFixed(0)}% (a lower bound)`,
  );
  if (groupShare('others') > 0.05)
    observations.push(
      `other processes used ${(groupShare('others') * 100).toFixed(0)}% of the cores during the measured run; the load this run could carry was lower for it`,
    );
  if (mailsRate < 0.9 * paceRate)
    observations.push(
      `the services sent ${fmt(mailsRate)}, below their pace of ${fmt(paceRate)}: the machine did not carry that load (see the CPU columns)`,
    );
  if (Math.abs(lastMails / firstMails - 1) > 0.1)
    observations.push(`the send rate moved by more than 10% between the first and the last window`);
  const worst = growth.reduce((a, b) => (b.byMedians > a.byMedians ? b : a));
  const missed = growth.filter((g) => g.byMedians > GOAL_GROWTH);
  const missedBySamples = growth.filter((g) => g.bySamples > GOAL_GROWTH);
  log(
    `method: RSS is sampled every ${SAMPLE_MS / 1_000} s; a single sample depends on where it falls in a garbage-collection cycle, so the goal is judged on the median of the ${first.length} samples of the first ${windowText} after the warm-up against the median of the ${last.length} of the last ${windowText}`,
  );
  log(
    `verdict: ${missed.length ? 'MISS' : 'MET'}: goal "no service's RSS grows more than 20% after warm-up", judged on the growth of medians ` +
      `(median of the last ${windowText} of samples / median of the first ${windowText} - 1); largest ${worst.app} ${pct(worst.byMedians)}` +
      (missed.length
        ? `; over the goal: ${missed.map((g) => `${g.app} ${pct(g.byMedians)}`).join(', ')}`
        : ''),
  );
  log(
    `  from single samples (last / first after the warm-up - 1): ${missedBySamples.length ? 'MISS' : 'MET'} (${growth.map((g) => `${g.app} ${pct(g.bySamples)}`).join(', ')})`,
  );
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const disarm = watchdog(TIME_LIMIT_MS, cleanup);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    log(`bench soak: ${machine()}`);
    log(
      `settings: ${MINUTES} min measured after a ${WARMUP_MS / 1_000} s warm-up; ${SERVICES} sandbox services x ${PER_SECOND}/s; ` +
        `tasks of ${TASK_SIZE} new contacts while fewer than ${BACKLOG_SECONDS} s of pace are pending; samples every ${SAMPLE_MS / 1_000} s`,
    );
    const builtAt = distStamp();
    if (!builtAt) throw new Error('dist/ has no built services: run `npm run build` first');
    log(`dist/ built ${new Date(builtAt).toISOString()}`);

    env = await createTestEnvironment('bench_soak');
    const environment = env;
    log(
      `test environment ${env.id}: database ${new URL(env.databaseUrl).pathname.slice(1)}, stream ${env.stream}`,
    );
    const start = async (app: AppName, extra: Record<string, string> = {}) => {
      const service = await startService(app, { ...environment.env, ...extra });
      running.set(app, service);
      log(`${app} started (pid ${service.process.pid}) at ${service.url}`);
      return service;
    };
    await start('api');
    const ingest = await start('webhook-ingest');
    await start('dispatcher', { TRACKING_BASE_URL: ingest.url });
    await start('monitor');

    const adminKey = await waitFor(
      'the admin key file',
      async () => {
        try {
          return readFileSync(join(environment.home, 'admin-key'), 'utf8').trim();
        } catch {
          return undefined;
        }
      },
      30_000,
    );
    const db = await connect(environment.databaseUrl, 'bench-soak');
    const feederDb = await connect(environment.databaseUrl, 'bench-soak-feeder');
    const [{ version }] = (await db.query(`SELECT current_setting('server_version') AS version`)).rows;
    log(`postgres ${version}`);

    const account = await call('POST', '/api/v1/accounts', adminKey, { name: 'soak' });
    const key = account.apiKey as string;
    if (!key)
      throw new Error(`POST /api/v1/accounts gave no apiKey: ${JSON.stringify(account).slice(0, 300)}`);
    for (let i = 0; i < SERVICES; i += 1)
      await call('POST', '/api/v1/services', key, {
        name: `soak-${i}`,
        provider: 'sandbox',
        from: { email: 'news@soak.example.com' },
        pace: { perSecond: PER_SECOND },
        options: SANDBOX_OPTIONS,
      });
    log(`${SERVICES} sandbox services, options ${JSON.stringify(SANDBOX_OPTIONS)}`);

    loadRunning = true;
    const loadStart = Date.now();
    const feeder = feed(key, feederDb);
    feeder.catch(() => undefined);
    const measureStart = loadStart + WARMUP_MS;
    const measureEnd = measureStart + MEASURE_MS;
    log(`load started; warm-up until ${clock(measureStart)}, measured until ${clock(measureEnd)} UTC`);
    let lastLog = 0;
    const progress = (s: Sample) => {
      if (s.at - lastLog < 60_000 && s.at < measureEnd - SAMPLE_MS) return;
      lastLog = s.at;
      log(
        `  ${s.at < measureStart ? 'warm-up' : 'measured'}: RSS ${APPS.map((app) => `${app} ${mib(s.services[app]!.rss)}`).join(', ')}; ` +
          `pending ${s.pendingSubTasks}, unparsed ${s.unparsedWebhooks}, unmatched ${s.unmatchedEvents}, relay lag ${s.relayLag}`,
      );
    };
    await Promise.race([
      sampleUntil(db, new URL(environment.databaseUrl).pathname.slice(1), measureEnd, progress),
      feeder.then(() => {
        if (loadRunning) throw new Error('the feeder stopped');
      }),
    ]);
    loadRunning = false;
    await feeder.catch((error: unknown) => problems.push(String(error)));
    if (distStamp() !== builtAt)
      observations.push(
        `dist/ was rebuilt during the run (${new Date(distStamp()).toISOString()}); the services kept the code they had loaded at start`,
      );

    await report(db, loadStart, measureStart, Math.min(measureEnd, samples[samples.length - 1].at));

    const stopStarted = Date.now();
    for (const app of APPS) await stopService(app);
    log(
      `services stopped (SIGTERM) in ${((Date.now() - stopStarted) / 1_000).toFixed(1)} s; exit codes ${APPS.map((app) => `${app} ${String(exitCodes.get(app))}`).join(', ')}`,
    );
    for (const app of APPS) {
      const code = exitCodes.get(app);
      if (code !== 0) observations.push(`${app} exited with ${String(code)} on SIGTERM`);
      const warnings = (outputs.get(app) ?? '')
        .split('\n')
        .filter((line) => /"level":"(warn|error)"/.test(line))
        .map((line) => {
          try {
            const entry = JSON.parse(line) as Json;
            return `${String(entry.msg ?? line)}${entry.error ? ` (${String(entry.error).slice(0, 100)})` : ''}`;
          } catch {
            return line;
          }
        });
      if (warnings.length) {
        const counts = new Map<string, number>();
        for (const w of warnings) counts.set(w.slice(0, 200), (counts.get(w.slice(0, 200)) ?? 0) + 1);
        observations.push(
          `${app} logged ${warnings.length} warnings/errors: ${[...counts]
            .slice(0, 5)
            .map(([m, n]) => `${n} x ${m}`)
            .join('; ')}`,
        );
      }
    }
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
    `bench soak failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  for (const [app, text] of outputs)
    if (text) process.stderr.write(`${app} output (tail):\n${text.slice(-2_000)}\n`);
  process.exitCode = 1;
});
