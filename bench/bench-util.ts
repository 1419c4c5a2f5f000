/**
 * Small helpers shared by the benches (not a bench itself).
 * The benches run from source: `node -r @swc-node/register bench/<name>.ts`.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';

export const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

export const rate = (count: number, ms: number): number => (count * 1_000) / ms;

export const fmt = (perSecond: number): string => `${Math.round(perSecond).toLocaleString('en-US')}/s`;

export const now = (): number => Number(process.hrtime.bigint()) / 1e6;

export function machine(): string {
  const cpu = cpus();
  return [
    `node ${process.version} (${process.platform}/${process.arch})`,
    `cores ${cpu.length} (${cpu[0]?.model.trim() ?? 'unknown'})`,
    `memory ${Math.round(totalmem() / 2 ** 30)} GiB`,
  ].join(', ');
}

export const log = (message: string): void => {
  process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${message}\n`);
};

export interface Comparison {
  figure: string;
  measured: number;
  baselineName: string;
  baseline: number;
  /** The goal as a fraction of the baseline, e.g. 0.5. */
  goal: number;
}

/** Prints the result table. A miss is reported, never turned into a failing exit code. */
export function printComparison(rows: readonly Comparison[]): void {
  const table = rows.map((r) => {
    const ratio = r.measured / r.baseline;
    return {
      figure: `${r.figure}: ${fmt(r.measured)}`,
      baseline: `${r.baselineName}: ${fmt(r.baseline)}`,
      ratio: `${ratio.toFixed(2)}x`,
      goal: `>= ${r.goal.toFixed(2)}x`,
      result: ratio >= r.goal ? 'PASS' : 'MISS',
    };
  });
  const columns = ['figure', 'baseline', 'ratio', 'goal', 'result'] as const;
  const widths = columns.map((c) => Math.max(c.length, ...table.map((row) => row[c].length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`;
  process.stdout.write(
    [
      line(columns),
      line(widths.map((w) => '-'.repeat(w))),
      ...table.map((row) => line(columns.map((c) => row[c]))),
    ].join('\n') + '\n',
  );
}

/**
 * Bounds a whole bench: after `ms` the cleanup runs (itself bounded) and the process exits 2.
 * Returns a function that disarms the watchdog once the bench has finished.
 */
export function watchdog(ms: number, cleanup: () => Promise<void>): () => void {
  const timer = setTimeout(() => {
    process.stderr.write(`bench: gave up after ${Math.round(ms / 1_000)} s, cleaning up\n`);
    const forced = setTimeout(() => process.exit(2), 30_000);
    forced.unref();
    cleanup()
      .catch((error: unknown) => process.stderr.write(`bench: cleanup failed: ${String(error)}\n`))
      .finally(() => process.exit(2));
  }, ms);
  return () => clearTimeout(timer);
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs: number,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Nearest-rank percentile (p in 0..100) of `values`; NaN for none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

/** Prints rows of ready-made text cells as a Markdown table, for figures that are not a rate. */
export function printTable(columns: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    `| ${widths.map((w, i) => (cells[i] ?? '').padEnd(w)).join(' | ')} |`;
  process.stdout.write(
    [line(columns), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n') + '\n',
  );
}

/** CPU time (clock ticks) and command line of every process, read from /proc (Linux only). */
export interface ProcessCpu {
  ppid: number;
  ticks: number;
  command: string;
}

export function processCpu(): Map<number, ProcessCpu> {
  const snapshot = new Map<number, ProcessCpu>();
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return snapshot;
  }
  for (const name of entries) {
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const command = readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0+/g, ' ').trim();
      snapshot.set(Number(name), {
        ppid: Number(rest[1]),
        ticks: Number(rest[11]) + Number(rest[12]),
        command,
      });
    } catch {
      // the process ended meanwhile
    }
  }
  return snapshot;
}

/** The pids of `root` and all its descendants in a snapshot. */
export function processTree(snapshot: Map<number, ProcessCpu>, root: number): Set<number> {
  const tree = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, p] of snapshot)
      if (!tree.has(pid) && tree.has(p.ppid)) {
        tree.add(pid);
        grew = true;
      }
  }
  return tree;
}

/**
 * Busy and total clock ticks of all the machine's cores, from the first line of /proc/stat
 * (Linux only): busy is user, nice, system, irq, softirq and steal; total adds idle and iowait.
 * Unlike per-process times, it keeps the time of processes that end within a window (pgbench).
 */
export function machineTicks(): { busy: number; total: number } {
  try {
    const [user, nice, system, idle, iowait, irq, softirq, steal] = readFileSync('/proc/stat', 'utf8')
      .split('\n', 1)[0]
      .trim()
      .split(/\s+/)
      .slice(1, 9)
      .map(Number);
    const busy = user + nice + system + irq + softirq + (steal || 0);
    return { busy, total: busy + idle + iowait };
  } catch {
    return { busy: NaN, total: NaN };
  }
}

/** Clock ticks per second of /proc's CPU times (almost always 100). */
export function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}

/** The figure `runPgbench` reports: the `tps = …` line of pgbench's output, parsed. */
export interface PgbenchResult {
  tps: number;
  /** The `tps = …` line as pgbench printed it. */
  line: string;
  version: string;
  /** Failed transactions pgbench reported (0 when it printed none). */
  failed: number;
}

/**
 * Runs pgbench against a scratch database on the Postgres of `adminUrl` (a URL to its
 * `postgres` database): CREATE DATABASE, `pgbench -i -s <scale> -q` (not timed), then
 * `pgbench <runArgs>`; the database is dropped afterwards, also when pgbench fails. While it
 * exists its name is in `track`, so a watchdog's cleanup can drop it too.
 */
export async function runPgbench(options: {
  adminUrl: string;
  pgbench: string;
  scale: number;
  runArgs: readonly string[];
  track: Set<string>;
  timeoutMs: number;
}): Promise<PgbenchResult> {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const { randomBytes } = await import('node:crypto');
  const { Client } = await import('pg');
  const run = promisify(execFile);
  const url = new URL(options.adminUrl);
  const connection = [
    '-h',
    url.hostname,
    '-p',
    url.port || '5432',
    '-U',
    decodeURIComponent(url.username || 'postgres'),
  ];
  const execOptions = {
    env: { ...process.env, ...(url.password ? { PGPASSWORD: decodeURIComponent(url.password) } : {}) },
    maxBuffer: 16 * 2 ** 20,
  };
  const admin = async (sql: string) => {
    const client = new Client({ connectionString: options.adminUrl });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  const { stdout: version } = await run(options.pgbench, ['--version'], { ...execOptions, timeout: 10_000 });
  const name = `bench_pgbench_${randomBytes(4).toString('hex')}`;
  await admin(`CREATE DATABASE "${name}"`);
  options.track.add(name);
  try {
    await run(options.pgbench, ['-i', '-s', String(options.scale), '-q', ...connection, name], {
      ...execOptions,
      timeout: options.timeoutMs,
    });
    const { stdout } = await run(options.pgbench, [...options.runArgs, ...connection, name], {
      ...execOptions,
      timeout: options.timeoutMs,
    });
    const match = /^tps = ([\d.]+)(.*)$/m.exec(stdout);
    if (!match) throw new Error(`no tps line in pgbench's output:\n${stdout}`);
    const failed = /number of failed transactions: (\d+)/.exec(stdout);
    return {
      tps: Number(match[1]),
      line: match[0].trim(),
      version: version.trim(),
      failed: failed ? Number(failed[1]) : 0,
    };
  } finally {
    await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    options.track.delete(name);
  }
}
