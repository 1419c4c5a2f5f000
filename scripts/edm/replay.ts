import { DataSource, EntityManager } from 'typeorm';
import { EventStore, rebuildReadModels } from '@edm/event-store';
import { createDataSource } from '@edm/persistence';
import { allProjections } from '@edm/read-models';
import { Command } from './command';
import { Context } from './context';
import { CliError, EXIT, ExitCode, oneLine } from './errors';
import { formatDuration, renderTable } from './ui';

const EXAMPLES_PER_TABLE = 5;
const LOCK_TIMEOUT = '15s';
const ATTEMPTS = 3;
/** Postgres: deadlock detected, lock not available (lock_timeout), serialization failure. */
const RETRYABLE = new Set(['40P01', '55P03', '40001']);

export interface TableResult {
  table: string;
  before: number;
  after: number;
  /** Rows that were there and are gone. */
  missing: number;
  /** Rows that were not there and now are. */
  extra: number;
  /** Rows whose primary key is in both but whose values differ. */
  changed: number;
  matched: boolean;
  examples: { key: unknown; before: unknown; after: unknown; columns: string[] }[];
}

export interface ReplayReport {
  events: number;
  durationMs: number;
  /** False with --dry-run: the rebuild was rolled back. */
  committed: boolean;
  matched: boolean;
  tables: TableResult[];
}

class RolledBack extends Error {
  constructor(readonly report: ReplayReport) {
    super('rolled back');
  }
}

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;

/**
 * The CLI's own transaction, handed to rebuildReadModels in place of a data source: the snapshot,
 * the rebuild and the comparison then all happen under one lock on the events table, so a running
 * system cannot slip a write in between.
 */
function withinTransaction(dataSource: DataSource, tx: EntityManager): DataSource {
  const view = Object.create(dataSource) as DataSource;
  const transaction = (...args: unknown[]) =>
    (args[args.length - 1] as (m: EntityManager) => Promise<unknown>)(tx);
  return Object.assign(view, { transaction: transaction as DataSource['transaction'] });
}

async function primaryKey(tx: EntityManager, table: string): Promise<string[]> {
  const rows: { name: string }[] = await tx.query(
    `SELECT a.attname AS name
       FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
      WHERE i.indrelid = $1::regclass AND i.indisprimary
      ORDER BY array_position(i.indkey::int2[], a.attnum)`,
    [quote(table)],
  );
  return rows.map((r) => r.name);
}

/** Compares the snapshot with the rebuilt table in SQL: counts, then a few examples of each kind. */
async function compare(
  tx: EntityManager,
  table: string,
  snapshot: string,
  key: string[],
): Promise<TableResult> {
  // Rows pair up by primary key; a table without one pairs identical rows (then nothing is "changed").
  const sides = key.length
    ? {
        from: `FROM ${quote(snapshot)} o FULL JOIN ${quote(table)} n ON ${key.map((k) => `o.${quote(k)} = n.${quote(k)}`).join(' AND ')}`,
        inBefore: `o.${quote(key[0])} IS NOT NULL`,
        inAfter: `n.${quote(key[0])} IS NOT NULL`,
        before: 'to_jsonb(o)',
        after: 'to_jsonb(n)',
        key: (side: 'o' | 'n') => `jsonb_build_array(${key.map((k) => `${side}.${quote(k)}`).join(', ')})`,
      }
    : {
        from: `FROM (SELECT to_jsonb(x) AS r, row_number() OVER (PARTITION BY to_jsonb(x)) AS k FROM ${quote(snapshot)} x) o
               FULL JOIN (SELECT to_jsonb(x) AS r, row_number() OVER (PARTITION BY to_jsonb(x)) AS k FROM ${quote(table)} x) n
                 ON o.r = n.r AND o.k = n.k`,
        inBefore: 'o.r IS NOT NULL',
        inAfter: 'n.r IS NOT NULL',
        before: 'o.r',
        after: 'n.r',
        key: (side: 'o' | 'n') => `${side}.r`,
      };
  const [counts]: { before: number; after: number; missing: number; extra: number; changed: number }[] =
    await tx.query(
      `SELECT count(*) FILTER (WHERE ${sides.inBefore})::int AS before,
              count(*) FILTER (WHERE ${sides.inAfter})::int AS after,
              count(*) FILTER (WHERE NOT ${sides.inAfter})::int AS missing,
              count(*) FILTER (WHERE NOT ${sides.inBefore})::int AS extra,
              count(*) FILTER (WHERE ${sides.inBefore} AND ${sides.inAfter} AND ${sides.before} <> ${sides.after})::int AS changed
         ${sides.from}`,
    );
  const matched = counts.missing + counts.extra + counts.changed === 0;
  if (matched) return { table, ...counts, matched, examples: [] };
  const rows: {
    key: unknown;
    before: Record<string, unknown> | null;
    after: Record<string, unknown> | null;
  }[] = await tx.query(
    `SELECT CASE WHEN ${sides.inBefore} THEN ${sides.key('o')} ELSE ${sides.key('n')} END AS key,
              CASE WHEN ${sides.inBefore} THEN ${sides.before} END AS before,
              CASE WHEN ${sides.inAfter} THEN ${sides.after} END AS after
         ${sides.from}
        WHERE NOT ${sides.inBefore} OR NOT ${sides.inAfter} OR ${sides.before} <> ${sides.after}
        LIMIT ${EXAMPLES_PER_TABLE}`,
  );
  const examples = rows.map((r) => {
    const names = new Set([...Object.keys(r.before ?? {}), ...Object.keys(r.after ?? {})]);
    const columns =
      r.before && r.after
        ? [...names].filter((n) => JSON.stringify(r.before?.[n]) !== JSON.stringify(r.after?.[n]))
        : [];
    return { key: r.key, before: r.before, after: r.after, columns };
  });
  return { table, ...counts, matched, examples };
}

async function replayOnce(dataSource: DataSource, dryRun: boolean): Promise<ReplayReport> {
  const store = new EventStore(dataSource);
  store.register(...allProjections);
  const tables = [...new Set(allProjections.flatMap((p) => p.tables))];
  const started = Date.now();
  try {
    return await dataSource.transaction(async (tx) => {
      await tx.query(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
      await tx.query('LOCK TABLE events IN EXCLUSIVE MODE');
      const keys = new Map<string, string[]>();
      for (const [i, table] of tables.entries()) {
        keys.set(table, await primaryKey(tx, table));
        await tx.query(
          `CREATE TEMP TABLE ${quote(`edm_replay_${i}`)} ON COMMIT DROP AS TABLE ${quote(table)}`,
        );
      }
      const rebuilt = await rebuildReadModels(withinTransaction(dataSource, tx), store);
      const results: TableResult[] = [];
      for (const [i, table] of tables.entries())
        results.push(await compare(tx, table, `edm_replay_${i}`, keys.get(table) ?? []));
      const report: ReplayReport = {
        events: rebuilt.events,
        durationMs: Date.now() - started,
        committed: !dryRun,
        matched: results.every((r) => r.matched),
        tables: results,
      };
      if (dryRun) throw new RolledBack(report);
      return report;
    });
  } catch (error) {
    if (error instanceof RolledBack) return error.report;
    throw error;
  }
}

const pgCode = (error: unknown) => (error as { code?: unknown }).code;

export const replayCommand: Command = {
  name: 'replay',
  usage: '',
  positionals: 0,
  summary: 'rebuild the read models from the events and verify them',
  description: [
    'Rebuilds every read-model table (those of all inline projections) from the event store, and checks the result row by row against what it replaced: rows missing, rows extra, rows changed, table by table.',
    'Connects to Postgres with the configured DATABASE_URL (not through the API). Snapshot, rebuild and comparison run in one transaction holding a lock on the events table: a running system keeps reading the old read models and its writes wait until it commits. With --dry-run everything is rolled back afterwards: a verification only.',
  ].join('\n\n'),
  exits:
    '0 every table matched; 1 some table differed (the rebuilt one is kept unless --dry-run); 3 Postgres unreachable',
  options: [{ name: 'dry-run', kind: 'flag', description: 'rebuild and compare, then roll back' }],
  async run(ctx: Context): Promise<ExitCode> {
    const config = ctx.config();
    const dryRun = ctx.flag('dry-run');
    const dataSource = createDataSource({
      url: config.DATABASE_URL,
      poolSize: 1,
      applicationName: 'edm-replay',
    });
    try {
      await dataSource.initialize();
    } catch (error) {
      throw new CliError(
        EXIT.unreachable,
        `cannot reach Postgres at ${new URL(config.DATABASE_URL).host} (${pgCode(error) ?? oneLine(error)})`,
      );
    }
    let report: ReplayReport | undefined;
    try {
      for (let attempt = 1; !report; attempt += 1) {
        try {
          report = await replayOnce(dataSource, dryRun);
        } catch (error) {
          const code = pgCode(error);
          if (code === '42P01')
            throw new CliError(
              EXIT.failure,
              `the database has no schema yet: run npm run migrate (or edm up) first`,
            );
          if (typeof code !== 'string' || !RETRYABLE.has(code) || attempt >= ATTEMPTS) throw error;
          if (!ctx.json) ctx.note(`replay: ${oneLine(error)}; trying again (${attempt + 1}/${ATTEMPTS})`);
        }
      }
    } finally {
      await dataSource.destroy();
    }

    if (ctx.json) {
      ctx.printJson(report);
      return report.matched ? EXIT.ok : EXIT.failure;
    }
    const s = ctx.style;
    ctx.print(
      `${dryRun ? 'Rebuilt (then rolled back)' : 'Rebuilt'} the read models from ${report.events} events in ${formatDuration(report.durationMs)}`,
    );
    ctx.print(
      renderTable(
        report.tables,
        [
          { header: 'table', value: (t) => t.table },
          { header: 'rows before', value: (t) => t.before, align: 'right' },
          { header: 'rows after', value: (t) => t.after, align: 'right' },
          { header: 'missing', value: (t) => t.missing, align: 'right' },
          { header: 'extra', value: (t) => t.extra, align: 'right' },
          { header: 'changed', value: (t) => t.changed, align: 'right' },
          {
            header: 'result',
            value: (t) => (t.matched ? 'matched' : 'DIFFERS'),
            colour: (text, t) => (t.matched ? s.green(text) : s.red(s.bold(text))),
          },
        ],
        s,
      ),
    );
    for (const t of report.tables.filter((x) => !x.matched)) {
      ctx.print(s.bold(`${t.table}: first differences`));
      for (const e of t.examples) {
        const key = JSON.stringify(e.key);
        if (!e.after) ctx.print(`  ${key}: missing after the rebuild`);
        else if (!e.before) ctx.print(`  ${key}: not there before the rebuild`);
        else
          ctx.print(
            `  ${key}: ${e.columns
              .map(
                (c) =>
                  `${c} ${JSON.stringify((e.before as Record<string, unknown>)[c])} → ${JSON.stringify((e.after as Record<string, unknown>)[c])}`,
              )
              .join(', ')}`,
          );
      }
    }
    const differing = report.tables.filter((t) => !t.matched).length;
    ctx.print(
      report.matched
        ? s.green(`every table matched (${report.tables.length} tables)`)
        : s.red(
            `${differing} of ${report.tables.length} tables differ${dryRun ? ' (rolled back: nothing changed)' : ' (the rebuilt read models are kept: they are what the events say)'}`,
          ),
    );
    return report.matched ? EXIT.ok : EXIT.failure;
  },
};
