import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './service-process';
import { eventually } from './test-environment';

/** A NATS server with JetStream of one suite's own, which the suite may stop and start at will. */
export interface PrivateNats {
  /** nats://127.0.0.1:PORT */
  url: string;
  port: number;
  /** SIGTERM; resolves when the server has exited. */
  stop(): Promise<void>;
  /** Starts again on the same port and store; resolves once JetStream answers its health check. */
  start(): Promise<void>;
  /** Stops the server (if running) and removes its store. */
  destroy(): Promise<void>;
}

/** The nats-server binary on PATH (Debian puts it in /usr/sbin). */
function binary(): string {
  for (const candidate of ['nats-server', '/usr/sbin/nats-server', '/usr/bin/nats-server']) {
    try {
      execFileSync(candidate, ['--version'], { stdio: 'ignore' });
      return candidate;
    } catch {
      // try the next one
    }
  }
  throw new Error('nats-server is not installed');
}

/**
 * nats-server with JetStream on free ports of 127.0.0.1 (client and monitoring), its store in a
 * fresh temporary directory that survives restarts, so streams and consumers come back with it.
 */
export async function startPrivateNats(): Promise<PrivateNats> {
  const command = binary();
  const store = mkdtempSync(join(tmpdir(), 'edm-nats-'));
  const [port, monitorPort] = [await freePort(), await freePort()];
  let child: ChildProcess | undefined;
  let output = '';

  const stop = async () => {
    const running = child;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise<void>((ok) => running.once('exit', () => ok()));
    running.kill('SIGTERM');
    const killer = setTimeout(() => running.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  };
  const start = async () => {
    output = '';
    const server = spawn(
      command,
      ['-a', '127.0.0.1', '-p', String(port), '-m', String(monitorPort), '-js', '-sd', store],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = server;
    server.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    server.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await eventually(
      `nats-server on ${port} healthy`,
      async () => {
        if (server.exitCode !== null)
          throw new Error(`nats-server exited with ${server.exitCode}:\n${output}`);
        const health = await fetch(`http://127.0.0.1:${monitorPort}/healthz?js-enabled-only=true`).catch(
          () => undefined,
        );
        return health?.status === 200;
      },
      30_000,
      50,
    );
  };
  const stopAtExit = () => child?.kill('SIGKILL');
  process.once('exit', stopAtExit);
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    stop,
    start,
    destroy: async () => {
      await stop();
      process.off('exit', stopAtExit);
      rmSync(store, { recursive: true, force: true });
    },
  };
}
