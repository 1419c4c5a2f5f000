import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ApiClient } from './api';
import { Command } from './command';
import { Context } from './context';
import { CliError, EXIT, ExitCode } from './errors';

/** `npm start` without the build: dist/scripts/start.js, next to this CLI's compiled entry point. */
export const START_SCRIPT = resolve(__dirname, '..', 'start.js');

const PORTS = ['API_PORT', 'DISPATCHER_PORT', 'WEBHOOK_INGEST_PORT', 'MONITOR_PORT'] as const;
const STARTUP_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 30_000;

function startScript(): string {
  if (!existsSync(START_SCRIPT))
    throw new CliError(EXIT.failure, `${START_SCRIPT} is missing: run npm run build (or npm start) first`);
  return START_SCRIPT;
}

export const upCommand: Command = {
  name: 'up',
  usage: '',
  positionals: 0,
  summary: 'start the whole system here (what npm start does)',
  description:
    'Brings the system up on this machine, like npm start without the build: uses Postgres and NATS at the configured URLs (a local nats-server when none answers), runs migrations, starts api, dispatcher, webhook-ingest and monitor with prefixed logs, and prints the URLs and the admin key. Ctrl-C stops everything.',
  exits: '0 stopped cleanly, or already running; otherwise the exit code of the system',
  options: [],
  async run(ctx: Context): Promise<ExitCode> {
    const script = startScript();
    const api = new ApiClient(ctx.apiUrl(), () => '');
    if (await api.ready()) {
      ctx.print(`the system is already running: API at ${api.baseUrl}`);
      return EXIT.ok;
    }
    const child = spawn(process.execPath, [script], { stdio: 'inherit' });
    // Ctrl-C reaches the whole process group; a SIGTERM sent to us alone is passed on.
    const forward = (signal: NodeJS.Signals) => () => {
      if (child.exitCode === null) child.kill(signal);
    };
    process.on('SIGINT', () => undefined);
    process.on('SIGTERM', forward('SIGTERM'));
    const code = await new Promise<number>((ok) =>
      child.once('exit', (c, signal) => ok(c ?? (signal ? 1 : 0))),
    );
    return (code === 0 ? EXIT.ok : EXIT.failure) as ExitCode;
  },
};

/** A system this CLI started in the background for a command, with its log file. */
export interface StartedSystem {
  child: ChildProcess;
  logFile: string;
  stop(): Promise<void>;
}

/**
 * Starts the system (dist/scripts/start.js) with its output in $EDM_HOME/logs/system.log and waits
 * until all four services are ready.
 */
export async function startSystem(ctx: Context, onWait: (elapsedMs: number) => void): Promise<StartedSystem> {
  const script = startScript();
  const config = ctx.config();
  const logs = join(config.home, 'logs');
  mkdirSync(logs, { recursive: true });
  const logFile = join(logs, 'system.log');
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [script], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  };
  const started = Date.now();
  for (;;) {
    if (child.exitCode !== null) {
      const tail = readFileSync(logFile, 'utf8').trim().split('\n').slice(-1)[0] ?? '';
      throw new CliError(EXIT.failure, `the system did not start (see ${logFile}): ${tail}`);
    }
    const ready = await Promise.all(
      PORTS.map((p) => new ApiClient(`http://127.0.0.1:${config[p]}`, () => '').ready(1_000)),
    );
    if (ready.every(Boolean)) return { child, logFile, stop };
    if (Date.now() - started > STARTUP_TIMEOUT_MS) {
      await stop();
      throw new CliError(
        EXIT.failure,
        `the system was not ready after ${STARTUP_TIMEOUT_MS / 1_000} s (see ${logFile})`,
      );
    }
    onWait(Date.now() - started);
    await new Promise((r) => setTimeout(r, 250));
  }
}
