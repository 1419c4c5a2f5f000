import { DataSource } from 'typeorm';
import { createTestEnvironment, TestEnvironment } from '@edm/testing';
import { createDataSource, runMigrations } from './database';
import { migrations } from './migrations';

/** The schema as the catalog describes it: columns, indexes, constraints, triggers and functions. */
async function schemaOf(db: DataSource): Promise<string[]> {
  const rows: { item: string }[] = await db.query(`
    SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable
           || ' ' || coalesce(column_default, '') AS item
      FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'schema_migrations'
    UNION ALL
    SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
    UNION ALL
    SELECT 'constraint ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid)
      FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text <> 'schema_migrations'
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL
    SELECT 'function ' || proname || ' ' || prosrc FROM pg_proc WHERE pronamespace = 'public'::regnamespace`);
  return rows.map((r) => r.item).sort();
}

describe('migrations (Postgres)', () => {
  let env: TestEnvironment;
  let db: DataSource;

  beforeAll(async () => {
    env = await createTestEnvironment('migrations');
    db = createDataSource({ url: env.databaseUrl, poolSize: 2, applicationName: 'test' });
    await db.initialize();
  });

  afterAll(async () => {
    await db.destroy();
    await env.dispose();
  });

  it('undoes each migration, newest first, back to the schema before it, and applies them all again', async () => {
    // The schema after each migration, applied one at a time.
    const after: string[][] = [await schemaOf(db)];
    for (let n = 1; n <= migrations.length; n += 1) {
      const one = createDataSource({ url: env.databaseUrl, poolSize: 2, applicationName: 'test' });
      one.setOptions({ migrations: migrations.slice(0, n) });
      await one.initialize();
      try {
        expect(await runMigrations(one)).toEqual([migrations[n - 1].name]);
      } finally {
        await one.destroy();
      }
      after.push(await schemaOf(db));
    }
    for (let n = migrations.length; n >= 1; n -= 1) {
      await db.undoLastMigration({ transaction: 'each' });
      expect(await schemaOf(db)).toEqual(after[n - 1]);
    }
    expect(await runMigrations(db)).toEqual(migrations.map((m) => m.name));
    expect(await schemaOf(db)).toEqual(after[migrations.length]);
  }, 60_000);
});
