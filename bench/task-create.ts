/**
 * Bench: creating a 100,000-recipient task through the API, against a plain multi-row INSERT.
 *
 * Run (after `npm run build`, with Postgres on 127.0.0.1:5432 and NATS JetStream on 127.0.0.1:4222):
 *
 *   node -r @swc-node/register bench/task-create.ts
 *
 * (a) Starts the built API (dist/apps/api/src/main.js) as a child process on a free port against a
 *     fresh test environment (own database, stream and subject prefix), creates 100,000 contacts
 *     with one tag through POST /api/v1/contacts in batches of 10,000 (not timed), waits until the
 *     API's outbox relay has published them, then times POST /api/v1/tasks with
 *     `recipients: { tags: [tag] }`: request sent to response read. Each answer must say
 *     counts.total = 100,000 and sub_tasks must hold 100,000 rows of that task. Three times (each a
 *     new task over the same contacts), waiting for the relay to drain in between; median.
 * (b) Baseline on the same Postgres and database: a scratch table made with
 *     `LIKE sub_tasks INCLUDING ALL` (same columns, defaults, checks, primary key, unique and
 *     secondary indexes as the migration's sub_tasks; no foreign key), 100,000 rows generated
 *     beforehand (not timed), inserted in one transaction by 100 multi-row INSERT statements of
 *     1,000 rows each, with `pg`. The same columns the task projection writes. Median of 3.
 *
 * Prints recipients/s, rows/s, their ratio and the goal (>= 0.5x baseline). A miss is printed,
 * never an exit code. Only 127.0.0.1 traffic; bounded by a watchdog; cleans up after itself.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { uuidv7 } from '@edm/event-store';
import { createTestEnvironment, ServiceProcess, startService, TestEnvironment } from '@edm/testing';
import { fmt, log, machine, median, now, printComparison, rate, waitFor, watchdog } from './bench-util';

const CONTACTS = 100_000;
const CONTACT_BATCH = 10_000;
const RUNS = 3;
const ROWS_PER_INSERT = 1_000;
const GOAL = 0.5;
const TIME_LIMIT_MS = 25 * 60_000;
const REQUEST_TIMEOUT_MS = 280_000;
const RELAY_DRAIN_TIMEOUT_MS = 300_000;

let env: TestEnvironment | undefined;
let api: ServiceProcess | undefined;
let db: Client | undefined;
let apiOutput = '';

async function stopApi(): Promise<void> {
  const running = api;
  api = undefined;
  if (!running) return;
  apiOutput = running.output();
  const stopped = await Promise.race([
    running.stop(),
    new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 20_000)),
  ]);
  if (stopped === 'timeout') await running.kill();
}

async function cleanup(): Promise<void> {
  await stopApi().catch(() => undefined);
  await db?.end().catch(() => undefined);
  db = undefined;
  await env?.dispose().catch(() => undefined);
  env = undefined;
}

/** The fields of an answer the bench looks at; everything else is only shown in errors. */
interface Answer {
  id?: string;
  counts?: { total?: number };
}

async function call(
  method: string,
  path: string,
  key: string,
  body: unknown,
): Promise<{ status: number; json: Answer }> {
  if (!api) throw new Error('the API is not running');
  const response = await fetch(`${api.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await response.text();
  let json: Answer;
  try {
    json = JSON.parse(text) as Answer;
  } catch {
    json = { text } as Answer; // not JSON: kept as text for the error message
  }
  return { status: response.status, json };
}

/** Waits until the API's outbox relay has published every committed event, so runs do not overlap its work. */
async function relayDrained(client: Client): Promise<void> {
  const started = now();
  try {
    await waitFor(
      'the outbox relay to drain',
      async () => {
        const { rows } = await client.query(
          `SELECT (SELECT count(*) FROM events)::bigint AS events,
                  coalesce((SELECT published FROM relay_checkpoints WHERE name = 'main'), 0)::bigint AS published`,
        );
        return rows[0].events === rows[0].published;
      },
      RELAY_DRAIN_TIMEOUT_MS,
      200,
    );
    log(`  relay drained in ${((now() - started) / 1_000).toFixed(1)} s`);
  } catch (error) {
    log(`  warning: ${String(error)}; going on`);
  }
}

async function apiFigure(): Promise<number[]> {
  env = await createTestEnvironment('bench_task_create');
  log(
    `test environment ${env.id}: database ${new URL(env.databaseUrl).pathname.slice(1)}, stream ${env.stream}`,
  );
  api = await startService('api', env.env);
  log(`API started (pid ${api.process.pid}) at ${api.url}`);
  const home = env.home;
  const key = await waitFor(
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
  db = new Client({ connectionString: env.databaseUrl, application_name: 'bench-task-create' });
  await db.connect();

  const tag = `bench-${env.id}`;
  const seeding = now();
  for (let start = 0; start < CONTACTS; start += CONTACT_BATCH) {
    const contacts = Array.from({ length: Math.min(CONTACT_BATCH, CONTACTS - start) }, (_, i) => ({
      email: `c${start + i}@bench.example.com`,
      tags: [tag],
    }));
    const answer = await call('POST', '/api/v1/contacts', key, { contacts });
    if (answer.status !== 200)
      throw new Error(
        `POST /api/v1/contacts answered ${answer.status}: ${JSON.stringify(answer.json).slice(0, 500)}`,
      );
  }
  const [{ count: contactCount }] = (
    await db.query(`SELECT count(*)::int AS count FROM contacts WHERE $1 = ANY(tags)`, [tag])
  ).rows;
  if (contactCount !== CONTACTS)
    throw new Error(`expected ${CONTACTS} contacts tagged ${tag}, found ${contactCount}`);
  log(
    `created ${CONTACTS.toLocaleString('en-US')} contacts tagged ${tag} in ${((now() - seeding) / 1_000).toFixed(1)} s (not timed)`,
  );
  await relayDrained(db);

  const rates: number[] = [];
  for (let run = 1; run <= RUNS; run += 1) {
    const body = {
      name: `bench run ${run}`,
      subject: 'Bench',
      text: 'Hello from the bench.',
      recipients: { tags: [tag] },
    };
    const started = now();
    const answer = await call('POST', '/api/v1/tasks', key, body);
    const ms = now() - started;
    if (answer.status !== 201)
      throw new Error(
        `POST /api/v1/tasks answered ${answer.status}: ${JSON.stringify(answer.json).slice(0, 500)}`,
      );
    if (answer.json?.counts?.total !== CONTACTS)
      throw new Error(`counts.total is ${answer.json?.counts?.total}, expected ${CONTACTS}`);
    const taskId = answer.json.id;
    const [{ mine, all }] = (
      await db.query(
        `SELECT count(*) FILTER (WHERE task_id = $1)::int AS mine, count(*)::int AS all FROM sub_tasks`,
        [taskId],
      )
    ).rows;
    if (mine !== CONTACTS)
      throw new Error(`sub_tasks holds ${mine} rows of task ${taskId}, expected ${CONTACTS}`);
    if (all !== CONTACTS * run)
      throw new Error(`sub_tasks holds ${all} rows in all, expected ${CONTACTS * run}`);
    const perSecond = rate(CONTACTS, ms);
    rates.push(perSecond);
    log(
      `run ${run}: task ${taskId}, ${CONTACTS.toLocaleString('en-US')} recipients in ${(ms / 1_000).toFixed(2)} s = ${fmt(perSecond)} (sub_tasks: ${mine} of this task, ${all} in all)`,
    );
    await relayDrained(db);
  }
  await stopApi();
  log('API stopped');
  return rates;
}

async function baseline(): Promise<number[]> {
  if (!db) throw new Error('no database connection');
  await db.query(`CREATE TABLE bench_sub_tasks (LIKE sub_tasks INCLUDING ALL)`);
  const { rows: indexes } = await db.query(
    `SELECT tablename, indexdef FROM pg_indexes WHERE tablename IN ('sub_tasks', 'bench_sub_tasks') ORDER BY tablename, indexname`,
  );
  const count = (table: string) => indexes.filter((i) => i.tablename === table).length;
  if (count('sub_tasks') !== count('bench_sub_tasks'))
    throw new Error('the scratch table does not have the indexes of sub_tasks');
  log(`scratch table bench_sub_tasks: LIKE sub_tasks INCLUDING ALL, ${count('bench_sub_tasks')} indexes`);

  const columns = [
    'id',
    'task_id',
    'account_id',
    'contact_id',
    'email',
    'status',
    'tracking_id',
    'next_attempt_at',
    'created_at',
    'updated_at',
  ];
  const placeholders = Array.from(
    { length: ROWS_PER_INSERT },
    (_, r) => `(${columns.map((_c, c) => `$${r * columns.length + c + 1}`).join(', ')})`,
  ).join(', ');
  const sql = `INSERT INTO bench_sub_tasks (${columns.join(', ')}) VALUES ${placeholders}`;
  const accountId = uuidv7();

  const rates: number[] = [];
  for (let run = 1; run <= RUNS; run += 1) {
    // Generated beforehand, not timed: the baseline is the database's insert rate.
    const taskId = uuidv7();
    const at = new Date().toISOString();
    const batches: unknown[][] = [];
    for (let start = 0; start < CONTACTS; start += ROWS_PER_INSERT) {
      const values: unknown[] = [];
      for (let i = start; i < start + ROWS_PER_INSERT; i += 1) {
        values.push(
          uuidv7(),
          taskId,
          accountId,
          uuidv7(),
          `c${i}@bench.example.com`,
          'pending',
          uuidv7().replace(/-/g, ''),
          at,
          at,
          at,
        );
      }
      batches.push(values);
    }
    const started = now();
    await db.query('BEGIN');
    for (const values of batches) await db.query(sql, values);
    await db.query('COMMIT');
    const ms = now() - started;
    const [{ rows }] = (
      await db.query(`SELECT count(*)::int AS rows FROM bench_sub_tasks WHERE task_id = $1`, [taskId])
    ).rows;
    if (rows !== CONTACTS)
      throw new Error(`bench_sub_tasks holds ${rows} rows of run ${run}, expected ${CONTACTS}`);
    const perSecond = rate(CONTACTS, ms);
    rates.push(perSecond);
    log(
      `baseline run ${run}: ${CONTACTS.toLocaleString('en-US')} rows in ${(ms / 1_000).toFixed(2)} s = ${fmt(perSecond)}`,
    );
  }
  await db.query(`DROP TABLE bench_sub_tasks`);
  return rates;
}

async function main(): Promise<void> {
  const disarm = watchdog(TIME_LIMIT_MS, cleanup);
  try {
    log(`bench task-create: ${machine()}`);
    const figure = await apiFigure();
    const [{ version }] = (await db!.query(`SELECT current_setting('server_version') AS version`)).rows;
    const base = await baseline();
    log(
      `postgres ${version}; API started from dist/ with the test environment's variables (relay enabled, pool 10)`,
    );
    log(`task create: recipients/s per run ${figure.map(fmt).join(', ')}; median ${fmt(median(figure))}`);
    log(`baseline:    rows/s per run ${base.map(fmt).join(', ')}; median ${fmt(median(base))}`);
    printComparison([
      {
        figure: 'task create, 100k recipients (median of 3)',
        measured: median(figure),
        baselineName: 'multi-row INSERT, 1k rows/stmt, 1 tx (median of 3)',
        baseline: median(base),
        goal: GOAL,
      },
    ]);
  } finally {
    await cleanup();
    disarm();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench task-create failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  if (apiOutput) process.stderr.write(`API output (tail):\n${apiOutput.slice(-4_000)}\n`);
  process.exitCode = 1;
});
