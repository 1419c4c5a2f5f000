import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { migrations } from './migrations';

export interface DatabaseOptions {
  url: string;
  poolSize: number;
  applicationName: string;
}

export function createDataSource(options: DatabaseOptions): DataSource {
  return new DataSource({
    type: 'postgres',
    url: options.url,
    applicationName: options.applicationName,
    poolSize: options.poolSize,
    migrations,
    migrationsTableName: 'schema_migrations',
    migrationsTransactionMode: 'each',
    synchronize: false,
    logging: false,
    extra: {
      connectionTimeoutMillis: 5_000,
      idleTimeoutMillis: 30_000,
      // A connection can die (server restart, admin kill) in the instant between pg-pool handing
      // it over and TypeORM attaching its listener; an 'error' with no listener would crash the
      // process. This listener is attached before the hand-over; the failed query still fails.
      onConnect: (client: { on(event: 'error', listener: () => void): void }) =>
        client.on('error', () => undefined),
    },
  });
}

/** Creates the database named in the URL when it does not exist; two processes racing both succeed. */
export async function ensureDatabase(url: string): Promise<void> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  if (!name) throw new Error('DATABASE_URL names no database');
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new Client({ connectionString: admin.toString(), connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (exists.rowCount) return;
    await client.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`).catch((error: { code?: string }) => {
      // 42P04 duplicate_database, 23505 unique_violation: another process created it first.
      if (error.code !== '42P04' && error.code !== '23505') throw error;
    });
  } finally {
    await client.end();
  }
}

const MIGRATION_LOCK = 7_414_001;

/**
 * Runs pending migrations under a session advisory lock, so that several processes starting at
 * once apply each migration exactly once and none starts before the schema is ready.
 */
export async function runMigrations(dataSource: DataSource): Promise<string[]> {
  const runner = dataSource.createQueryRunner();
  await runner.connect();
  try {
    await runner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    const applied = await dataSource.runMigrations({ transaction: 'each' });
    return applied.map((m) => m.name);
  } finally {
    await runner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    await runner.release();
  }
}
