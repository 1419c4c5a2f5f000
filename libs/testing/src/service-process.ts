import { ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { eventually } from './test-environment';

export type AppName = 'api' | 'dispatcher' | 'webhook-ingest' | 'monitor';

const PORT_VARIABLE: Record<AppName, string> = {
  api: 'API_PORT',
  dispatcher: 'DISPATCHER_PORT',
  'webhook-ingest': 'WEBHOOK_INGEST_PORT',
  monitor: 'MONITOR_PORT',
};

export interface ServiceProcess {
  url: string;
  port: number;
  process: ChildProcess;
  output: () => string;
  /** SIGTERM, then waits for the exit code. */
  stop: () => Promise<number | null>;
  kill: () => Promise<void>;
}

export const freePort = (): Promise<number> =>
  new Promise((ok, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => ok(port));
    });
  });

/**
 * Runs a built app (dist/) as a child process and waits until /health/ready answers 200. Pass the
 * `port` of a stopped instance to bring it back where its callers expect it.
 */
export async function startService(
  app: AppName,
  env: Record<string, string>,
  { waitReady = true, port: fixedPort }: { waitReady?: boolean; port?: number } = {},
): Promise<ServiceProcess> {
  const port = fixedPort ?? (await freePort());
  const main = resolve(__dirname, '../../../dist/apps', app, 'src/main.js');
  const child = spawn(process.execPath, [main], {
    env: { PATH: process.env.PATH ?? '', ...env, [PORT_VARIABLE[app]]: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  const url = `http://127.0.0.1:${port}`;
  if (waitReady) {
    await eventually(
      `${app} ready`,
      async () => {
        if (child.exitCode !== null) throw new Error(`${app} exited with ${child.exitCode}:\n${output}`);
        const response = await fetch(`${url}/health/ready`).catch(() => undefined);
        return response?.status === 200;
      },
      30_000,
      100,
    );
  }
  return {
    url,
    port,
    process: child,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
    kill: async () => {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
