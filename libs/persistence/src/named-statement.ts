import { createHash } from 'node:crypto';
import type { PoolClient, QueryConfig } from 'pg';
import { DataSource, EntityManager, QueryRunner } from 'typeorm';

/**
 * A statement run as a named (prepared) statement of its connection: Postgres parses and plans
 * it on the connection's first use and then only binds and runs it, where an unnamed statement
 * is parsed and planned on every call. For the statements that run per batch of mails or webhook
 * events, planning alone was a quarter of Postgres' time (docs/benchmarks.md).
 *
 * For a fixed text, or one of a small bounded set: every connection keeps each text it was
 * given. The text names its columns (no `*`, in what it returns too), so that a migration adding
 * a column never changes the result of a statement prepared before it.
 */
export class NamedStatement {
  /** From the text: two texts never share a name, and every process names a text alike. */
  readonly name: string;

  constructor(readonly text: string) {
    this.name = `edm_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
  }

  /** The query to hand to a `pg` client (queryNamed does, as does a caller holding a bare client). */
  query(values: readonly unknown[]): QueryConfig {
    return { name: this.name, text: this.text, values: [...values] };
  }
}

/** What a statement gave back: its rows and, for a write, how many rows it touched. */
export interface NamedResult<T> {
  rows: T[];
  rowCount: number;
}

/**
 * Runs `statement` on the connection of `on`: the transaction's own when `on` is a transaction's
 * EntityManager, else a connection from the pool for this one statement. A failure is the
 * driver's error, with its SQLSTATE in `code` (pgErrorCode reads it).
 */
export async function queryNamed<T = Record<string, unknown>>(
  on: EntityManager | DataSource,
  statement: NamedStatement,
  values: readonly unknown[],
): Promise<NamedResult<T>> {
  const held = on instanceof DataSource ? undefined : on.queryRunner;
  if (held && !held.isReleased) return run<T>(held, statement, values);
  const runner = (on instanceof DataSource ? on : on.connection).createQueryRunner();
  try {
    return await run<T>(runner, statement, values);
  } finally {
    await runner.release();
  }
}

async function run<T>(
  runner: QueryRunner,
  statement: NamedStatement,
  values: readonly unknown[],
): Promise<NamedResult<T>> {
  const client = (await runner.connect()) as PoolClient;
  const result = await client.query(statement.query(values));
  return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
}
