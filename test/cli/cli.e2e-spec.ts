import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { createTestEnvironment, freePort, ServiceProcess, startService, TestEnvironment } from '@edm/testing';

const EDM = resolve(__dirname, '../../bin/edm.js');
const READ_MODEL_TABLES = [
  'accounts',
  'alerts',
  'api_keys',
  'contacts',
  'sending_services',
  'sub_tasks',
  'tasks',
  'templates',
];
const COMMANDS = ['up', 'demo', 'tasks', 'watch', 'diagnose', 'repair', 'services', 'alerts', 'replay'];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface DemoSummary {
  ok: boolean;
  taskId: string;
  status: string;
  total: number;
  sent: number;
  delivered: number;
  services: { id: string; name: string; intervalMs: number; sent: number; delivered: number }[];
  webhookEvents: Record<string, number>;
  alerts: unknown[];
}

/** `edm` as operators run it: a child process, against the four services running as processes. */
describe('the edm CLI (e2e)', () => {
  let env: TestEnvironment;
  const running: ServiceProcess[] = [];
  let api: ServiceProcess;
  let key: string;
  let demoTaskId: string;
  let db: Client;

  /** Runs `node bin/edm.js …` with the suite's environment (EDM_HOME: the key file; DATABASE_URL: replay). */
  const edm = (args: string[], timeoutMs = 60_000) =>
    new Promise<Run>((ok, fail) => {
      const child = spawn(process.execPath, [EDM, ...args], {
        env: { PATH: process.env.PATH ?? '', ...env.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        fail(new Error(`edm ${args.join(' ')} did not end within ${timeoutMs} ms:\n${stdout}\n${stderr}`));
      }, timeoutMs);
      child.once('close', (code) => {
        clearTimeout(timer);
        ok({ code, stdout, stderr });
      });
    });
  const atApi = (...args: string[]) => edm([...args, '--api', api.url]);
  /** Asserts the exit code, showing the output when it is not the expected one. */
  const exits = (run: Run, code: number) => {
    if (run.code !== code)
      throw new Error(
        `exit code ${run.code}, expected ${code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`,
      );
  };
  const json = <T>(run: Run): T => {
    exits(run, 0);
    expect(run.stderr).toBe('');
    return JSON.parse(run.stdout) as T;
  };
  const oneLineError = (run: Run) => {
    expect(run.stdout).toBe('');
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(/^edm: /);
  };
  const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const response = await fetch(`${api.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  };

  beforeAll(async () => {
    env = await createTestEnvironment('cli');
    const common = { ...env.env, RELAY_POLL_INTERVAL_MS: '200' };
    const [apiProcess, ingest] = await Promise.all([
      startService('api', common),
      startService('webhook-ingest', { ...common, INGEST_POLL_INTERVAL_MS: '200' }),
    ]);
    api = apiProcess;
    running.push(api, ingest);
    running.push(
      ...(await Promise.all([
        startService('dispatcher', {
          ...common,
          TRACKING_BASE_URL: ingest.url,
          DISPATCH_POLL_INTERVAL_MS: '250',
          DISPATCH_REAPER_INTERVAL_MS: '500',
        }),
        startService('monitor', { ...common, MONITOR_INTERVAL_MS: '1000' }),
      ])),
    );
    key = readFileSync(join(env.home, 'admin-key'), 'utf8').trim();
    db = new Client({ connectionString: env.databaseUrl });
    await db.connect();
  }, 60_000);

  afterAll(async () => {
    await db?.end();
    await Promise.all(running.map((p) => p.stop()));
    await env?.dispose();
  });

  it('answers --help for every command with exit 0, and an unknown command with usage and exit 2', async () => {
    const runs = await Promise.all([
      edm(['--help']),
      edm(['help', 'demo']),
      ...COMMANDS.map((c) => edm([c, '--help'])),
    ]);
    for (const run of runs) {
      exits(run, 0);
      expect(run.stdout).toMatch(/^Usage: edm /);
    }
    expect(runs[1].stdout).toContain('--pace-scale <factor>');
    COMMANDS.forEach((c, i) => expect(runs[i + 2].stdout).toContain(`Usage: edm ${c}`));

    const unknown = await edm(['frobnicate']);
    exits(unknown, 2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    expect(unknown.stderr).toContain('Usage: edm <command>');
    const badFlag = await edm(['tasks', '--colour']);
    exits(badFlag, 2);
    oneLineError(badFlag);
    const missing = await edm(['diagnose']);
    exits(missing, 2);
    oneLineError(missing);
  });

  it('replay rebuilds the read models from the events, says every table matched, and catches a difference', async () => {
    const first = await edm(['replay']);
    exits(first, 0);
    expect(first.stdout).toMatch(/^Rebuilt the read models from \d+ events/);
    expect(first.stdout).toMatch(/^accounts\s+1\s+1\s+0\s+0\s+0\s+matched$/m);
    expect(first.stdout).toContain(`every table matched (${READ_MODEL_TABLES.length} tables)`);

    // A read model drifts from the events: --dry-run finds it and leaves it; a real replay restores it.
    await db.query(`UPDATE accounts SET name = 'tampered'`);
    const dry = await edm(['replay', '--dry-run', '--json']);
    exits(dry, 1);
    const report = JSON.parse(dry.stdout) as {
      matched: boolean;
      committed: boolean;
      tables: { table: string; changed: number; examples: { columns: string[] }[] }[];
    };
    expect(report).toMatchObject({ matched: false, committed: false });
    const accounts = report.tables.find((t) => t.table === 'accounts');
    expect(accounts).toMatchObject({ changed: 1, examples: [{ columns: ['name'] }] });
    expect((await db.query(`SELECT name FROM accounts`)).rows).toEqual([{ name: 'tampered' }]);

    const restore = await edm(['replay']);
    exits(restore, 1);
    expect(restore.stdout).toMatch(/^accounts\s+1\s+1\s+0\s+0\s+1\s+DIFFERS$/m);
    expect(restore.stdout).toContain('name "tampered" → "default"');
    expect((await db.query(`SELECT name FROM accounts`)).rows).toEqual([{ name: 'default' }]);
    exits(await edm(['replay', '--json']), 0);
  });

  it('demo --pace-scale 0.05 --json: the incident, now passing: 20/20 sent over both services, all delivered', async () => {
    const summary = json<DemoSummary>(await atApi('demo', '--pace-scale', '0.05', '--json'));
    expect(summary).toMatchObject({ ok: true, status: 'completed', total: 20, sent: 20, delivered: 20 });
    expect(summary.services.map((s) => s.intervalMs)).toEqual([155, 90]);
    expect(summary.services.every((s) => s.sent > 0)).toBe(true);
    expect(summary.services.reduce((n, s) => n + s.sent, 0)).toBe(20);
    expect(summary.webhookEvents.delivered).toBe(20);
    demoTaskId = summary.taskId;
  });

  it('demo for a human: progress, webhook events flowing back, a summary table', async () => {
    const run = await atApi('demo', '--pace-scale', '0.02', '--contacts', '6');
    exits(run, 0);
    expect(run.stdout).toMatch(/→ sent .*@example\.com/);
    expect(run.stdout).toMatch(/← delivered .*@example\.com .*webhook from demo/);
    expect(run.stdout).toMatch(/^total\s+-\s+6\s+6\s/m);
    expect(run.stdout).toContain('the incident, now passing: 6/6 sent over 2 services');
    expect(run.stdout).not.toContain('\x1b['); // no colours off a terminal
  });

  it('lists tasks, services and alerts as JSON that parses', async () => {
    const [tasks, services, alerts] = await Promise.all([
      atApi('tasks', '--json'),
      atApi('services', '--json'),
      atApi('alerts', '--json', '--status', 'all'),
    ]);
    expect(json<{ items: { id: string }[] }>(tasks).items.map((t) => t.id)).toContain(demoTaskId);
    expect(
      json<{ items: { provider: string }[] }>(services).items.filter((s) => s.provider === 'sandbox'),
    ).toHaveLength(4);
    expect(Array.isArray(json<{ items: unknown[] }>(alerts).items)).toBe(true);
    const table = await atApi('tasks');
    exits(table, 0);
    expect(table.stdout).toMatch(new RegExp(`${demoTaskId}\\s+demo .*completed\\s+20`));
  });

  it('diagnose prints a verdict; with --json it parses and carries the verdict', async () => {
    const human = await atApi('diagnose', demoTaskId);
    exits(human, 0);
    expect(human.stdout).toMatch(/^Verdict: completed: 20 sent, 0 failed/m);
    expect(human.stdout).toContain('Webhook events received for this task');
    const diagnosis = json<{ verdict: string; task: { id: string }; stuckLeases: { count: number } }>(
      await atApi('diagnose', demoTaskId, '--json'),
    );
    expect(diagnosis.verdict).toMatch(/^completed: 20 sent/);
    expect(diagnosis.task.id).toBe(demoTaskId);
    expect(diagnosis.stuckLeases.count).toBe(0);
  });

  it('repair --json reports what it changed: nothing, for a healthy completed task', async () => {
    const report = json<Record<string, unknown>>(await atApi('repair', demoTaskId, '--json'));
    expect(report).toMatchObject({
      releasedLeases: 0,
      retriedWebhookEvents: 0,
      subTasksOutOfStepWithEvents: 0,
      changed: false,
      diagnosis: { verdict: expect.stringMatching(/^completed/) },
    });
    const human = await atApi('repair', demoTaskId);
    exits(human, 0);
    expect(human.stdout).toContain('Nothing needed repairing.');
  });

  it('watch follows a task until it completes and exits 0', async () => {
    const service = await call<{ id: string }>('POST', '/api/v1/services', {
      name: 'watched',
      provider: 'sandbox',
      from: { email: 'w@example.com' },
      pace: { intervalMs: 150 },
      options: { latencyMs: 10, callbacks: { delivered: 1 }, callbackDelayMs: 100 },
    });
    await call('POST', '/api/v1/contacts', {
      contacts: Array.from({ length: 6 }, (_, i) => ({
        email: `watched-${i}@example.com`,
        tags: ['watched'],
      })),
    });
    const task = await call<{ id: string }>('POST', '/api/v1/tasks', {
      name: 'watched',
      subject: 's',
      text: 't',
      recipients: { tags: ['watched'] },
      serviceIds: [service.id],
    });
    const run = await atApi('watch', task.id, '--interval', '100', '--timeout', '30');
    exits(run, 0);
    expect(run.stdout).toContain(`task ${task.id} completed`);
    expect(run.stdout).toContain('6/6 sent');
  });

  it('replay after the demo: every read model still equals its rebuild from the events', async () => {
    const report = await edm(['replay', '--dry-run', '--json']);
    const parsed = JSON.parse(report.stdout) as {
      matched: boolean;
      tables: { table: string; matched: boolean }[];
    };
    expect(parsed.tables.map((t) => t.table).sort()).toEqual(READ_MODEL_TABLES);
    exits(report, 0); // shows the differing rows when it fails
    expect(parsed.matched).toBe(true);
  });

  it('says what went wrong in one line, with an exit code that means it', async () => {
    const closed = await freePort();
    const down = await edm(['tasks', '--api', `http://127.0.0.1:${closed}`]);
    exits(down, 3);
    oneLineError(down);
    expect(down.stderr).toContain(`cannot reach the API at http://127.0.0.1:${closed}`);

    const badKey = await atApi('tasks', '--key', 'edm_adm_not-a-key-of-this-system');
    exits(badKey, 4);
    oneLineError(badKey);
    expect(badKey.stderr).toContain('authentication refused');

    const unknownTask = await atApi('diagnose', '01890000-0000-7000-8000-000000000000');
    exits(unknownTask, 5);
    oneLineError(unknownTask);
    expect(unknownTask.stderr).toContain('task not found');
    for (const command of ['repair', 'watch']) {
      const run = await atApi(command, 'no-such-task', '--json');
      exits(run, 5);
      oneLineError(run);
    }
  });
});
