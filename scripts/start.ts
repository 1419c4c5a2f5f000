import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { join, resolve } from 'node:path';
import { AppConfig, ConfigError, loadConfig } from '@edm/config';
import { createDataSource, ensureDatabase, runMigrations } from '@edm/persistence';

const APPS = [
  ['api', 'API_PORT'],
  ['dispatcher', 'DISPATCHER_PORT'],
  ['webhook-ingest', 'WEBHOOK_INGEST_PORT'],
  ['monitor', 'MONITOR_PORT'],
] as const;
const COLOURS = ['\x1b[36m', '\x1b[35m', '\x1b[33m', '\x1b[32m'];
const tty = process.stdout.isTTY;

const say = (line: string) =>
  process.stdout.write(`${tty ? '\x1b[1m' : ''}[edm]${tty ? '\x1b[0m' : ''} ${line}\n`);

const reachable = (url: string, defaultPort: number) =>
  new Promise<boolean>((ok) => {
    const u = new URL(url);
    const socket = tcpConnect({ host: u.hostname, port: Number(u.port || defaultPort), timeout: 1_500 });
    socket.once('connect', () => (socket.destroy(), ok(true)));
    socket.once('error', () => ok(false));
    socket.once('timeout', () => (socket.destroy(), ok(false)));
  });

/** Uses the configured NATS; when none answers, runs a local nats-server with JetStream under EDM_HOME. */
async function ensureNats(config: AppConfig, children: ChildProcess[]): Promise<void> {
  const first = config.NATS_URL.split(',')[0];
  if (await reachable(first, 4222)) return;
  const binary = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' }).stdout.trim();
  if (!binary)
    throw new Error(
      `no NATS at ${first} and no nats-server binary on PATH: install NATS (2.9+) or set NATS_URL`,
    );
  const u = new URL(first);
  const store = join(config.home, 'nats');
  mkdirSync(store, { recursive: true });
  say(`no NATS at ${first}: starting ${binary} with JetStream (store ${store})`);
  const child = spawn(binary, ['-a', u.hostname, '-p', u.port || '4222', '-js', '-sd', store], {
    stdio: 'ignore',
  });
  children.push(child);
  for (let i = 0; i < 50 && !(await reachable(first, 4222)); i += 1)
    await new Promise((r) => setTimeout(r, 100));
}

async function main(): Promise<void> {
  const config = loadConfig();
  const children: ChildProcess[] = [];
  let stopping = false;
  const stopAll = () => {
    if (stopping) return;
    stopping = true;
    children.forEach((c) => c.exitCode === null && c.kill('SIGTERM'));
  };
  process.once('SIGINT', stopAll);
  process.once('SIGTERM', stopAll);

  if (!(await reachable(config.DATABASE_URL, 5432))) {
    throw new Error(
      `no Postgres at ${new URL(config.DATABASE_URL).host}: start Postgres (14+) or set DATABASE_URL`,
    );
  }
  await ensureNats(config, children);
  await ensureDatabase(config.DATABASE_URL);
  const dataSource = createDataSource({ url: config.DATABASE_URL, poolSize: 2, applicationName: 'start' });
  await dataSource.initialize();
  const applied = await runMigrations(dataSource);
  await dataSource.destroy();
  say(applied.length ? `migrations applied: ${applied.join(', ')}` : 'schema is up to date');

  APPS.forEach(([app], i) => {
    const child = spawn(process.execPath, [resolve(__dirname, '../apps', app, 'src/main.js')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const prefix = `${tty ? COLOURS[i] : ''}${app.padEnd(14)}${tty ? '\x1b[0m' : ''}|`;
    const relay = (chunk: Buffer) =>
      chunk
        .toString()
        .split('\n')
        .filter(Boolean)
        .forEach((line) => process.stdout.write(`${prefix} ${line}\n`));
    child.stdout?.on('data', relay);
    child.stderr?.on('data', relay);
    child.once('exit', (code, signal) => {
      say(`${app} exited (${signal ?? code})`);
      stopAll();
      process.exitCode = code ?? 0;
    });
    children.push(child);
  });

  for (const [app, portVariable] of APPS) {
    const url = `http://127.0.0.1:${config[portVariable]}/health/ready`;
    for (let i = 0; i < 300; i += 1) {
      const ok = await fetch(url).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    say(`${app} ready on http://127.0.0.1:${config[portVariable]}`);
  }
  const keyFile = join(config.home, 'admin-key');
  say(`API:      http://127.0.0.1:${config.API_PORT}/api/v1   (docs: /api/docs)`);
  say(`Webhooks: http://127.0.0.1:${config.WEBHOOK_INGEST_PORT}/api/webhooks/mail-event`);
  if (existsSync(keyFile)) say(`Admin key: ${readFileSync(keyFile, 'utf8').trim()}   (file: ${keyFile})`);
  else if (config.EDM_ADMIN_KEY) say('Admin key: the one in EDM_ADMIN_KEY');
  say('Ctrl-C stops everything.');
}

main().catch((error: unknown) => {
  process.stderr.write(
    `edm start: ${error instanceof ConfigError ? error.message : error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exit(1);
});
