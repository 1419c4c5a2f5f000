import { execFile, execFileSync } from 'node:child_process';
import {
  appendFileSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { freePort } from './service-process';

/** A Postgres cluster of one suite's own, which the suite may stop and start at will. */
export interface PrivatePostgres {
  /** postgres://postgres@127.0.0.1:PORT/postgres (trust auth). */
  url: string;
  port: number;
  /** `pg_ctl stop -m fast`: sessions are terminated, the server is gone when this resolves. */
  stop(): Promise<void>;
  /** `pg_ctl start` on the same port and data; resolves once a TCP connection is accepted. */
  start(): Promise<void>;
  /** Stops the server (if running) and removes its directory. */
  destroy(): Promise<void>;
}

const ROOT = '/usr/lib/postgresql';
const STEP_TIMEOUT_MS = 60_000;
const PG_CTL_WAIT_SECONDS = 30;

/** The newest installed server version's bin directory. */
function binaries(): string {
  const versions = existsSync(ROOT)
    ? readdirSync(ROOT)
        .filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(join(ROOT, v, 'bin', 'pg_ctl')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (!versions.length) throw new Error(`no PostgreSQL server binaries under ${ROOT}`);
  return join(ROOT, versions[0], 'bin');
}

/** uid and gid of the `postgres` system user, from /etc/passwd. */
function postgresUser(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('there is no postgres system user to run the private cluster as');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** Runs a command as the postgres user (through runuser when we are root), bounded in time. */
function asPostgres(command: string, args: string[], timeoutMs = STEP_TIMEOUT_MS): Promise<string> {
  const [file, argv] =
    process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
  return new Promise((ok, fail) => {
    execFile(
      file,
      argv,
      { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (error)
          fail(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${stdout}${stderr}`));
        else ok(stdout);
      },
    );
  });
}

/** Clusters of this process still running, stopped immediately if the process exits without destroy(). */
const running = new Map<string, () => void>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => running.forEach((stopNow) => stopNow()));
}

/**
 * initdb into a fresh temporary directory and start a server on a free port: trust auth, TCP on
 * 127.0.0.1 only, its unix socket inside that directory, fsync on. Postgres refuses to run as
 * root, so when we are root everything runs as the `postgres` user through runuser.
 */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = binaries();
  const pgCtl = join(bin, 'pg_ctl');
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? postgresUser() : undefined;
  const dir = mkdtempSync(join(tmpdir(), 'edm-pg-'));
  const data = join(dir, 'data');
  const sockets = join(dir, 'socket');
  const log = join(dir, 'server.log');
  mkdirSync(data, { mode: 0o700 });
  mkdirSync(sockets, { mode: 0o700 });
  if (owner) for (const path of [dir, data, sockets]) chownSync(path, owner.uid, owner.gid);
  const port = await freePort();
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const logTail = () => {
    try {
      return readFileSync(log, 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      return '';
    }
  };

  /** Synchronous last resort at process exit. */
  const stopNow = () => {
    try {
      const args = ['stop', '-D', data, '-m', 'immediate', '-w', '-t', '10'];
      if (asRoot)
        execFileSync('runuser', ['-u', 'postgres', '--', pgCtl, ...args], {
          timeout: 15_000,
          stdio: 'ignore',
        });
      else execFileSync(pgCtl, args, { timeout: 15_000, stdio: 'ignore' });
    } catch {
      // already stopped
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const stopWith = async (mode: 'fast' | 'immediate') => {
    const status = await asPostgres(pgCtl, ['status', '-D', data], 10_000).then(
      () => 'running',
      () => 'stopped',
    );
    if (status === 'stopped') return;
    await asPostgres(pgCtl, ['stop', '-D', data, '-m', mode, '-w', '-t', String(PG_CTL_WAIT_SECONDS)]);
  };

  const start = async () => {
    running.set(dir, stopNow);
    try {
      await asPostgres(pgCtl, ['start', '-D', data, '-l', log, '-w', '-t', String(PG_CTL_WAIT_SECONDS)]);
    } catch (error) {
      throw new Error(`${String(error)}\nserver log:\n${logTail()}`, { cause: error });
    }
    // pg_ctl -w waits on the socket; the suite connects over TCP, so wait for that too.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const client = new Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
      try {
        await client.connect();
        await client.query('SELECT 1');
        await client.end();
        return;
      } catch (error) {
        await client.end().catch(() => undefined);
        if (Date.now() > deadline)
          throw new Error(
            `private Postgres on ${port} accepts no connection: ${String(error)}\n${logTail()}`,
            { cause: error },
          );
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };

  try {
    await asPostgres(join(bin, 'initdb'), [
      '-D',
      data,
      '-U',
      'postgres',
      '--auth=trust',
      '--encoding=UTF8',
      '--locale=C',
    ]);
    appendFileSync(
      join(data, 'postgresql.conf'),
      [
        '',
        '# private test cluster',
        `port = ${port}`,
        `listen_addresses = '127.0.0.1'`,
        `unix_socket_directories = '${sockets}'`,
        'fsync = on',
        'synchronous_commit = on',
        'max_connections = 100',
        '',
      ].join('\n'),
    );
    installExitHook();
    await start();
  } catch (error) {
    stopNow();
    running.delete(dir);
    throw error;
  }

  return {
    url,
    port,
    start,
    stop: async () => {
      await stopWith('fast');
    },
    destroy: async () => {
      try {
        await stopWith('fast');
      } catch {
        await stopWith('immediate').catch(() => undefined);
      }
      running.delete(dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
