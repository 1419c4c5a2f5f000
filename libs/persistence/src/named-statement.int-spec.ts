import { DataSource } from 'typeorm';
import { createTestEnvironment, TestEnvironment } from '@edm/testing';
import { createDataSource } from './database';
import { NamedStatement, queryNamed } from './named-statement';
import { PG_UNIQUE_VIOLATION, pgErrorCode } from './postgres-errors';

describe('named statements (Postgres)', () => {
  let env: TestEnvironment;
  let db: DataSource;
  const insert = new NamedStatement(`INSERT INTO named_probe (id, note) VALUES ($1, $2) RETURNING id, note`);
  const count = new NamedStatement(`SELECT count(*)::int AS n FROM named_probe WHERE id = ANY ($1::int[])`);
  const prepared = new NamedStatement(
    `SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = $1`,
  );

  beforeAll(async () => {
    env = await createTestEnvironment('named-statement');
    db = createDataSource({ url: env.databaseUrl, poolSize: 2, applicationName: 'test' });
    await db.initialize();
    await db.query(`CREATE TABLE named_probe (id int PRIMARY KEY, note text)`);
  });

  afterAll(async () => {
    await db.destroy();
    await env.dispose();
  });

  it('names a statement by its text', () => {
    expect(new NamedStatement('SELECT 1').name).toBe(new NamedStatement('SELECT 1').name);
    expect(new NamedStatement('SELECT 1').name).not.toBe(new NamedStatement('SELECT 2').name);
    // Postgres keeps 63 bytes of a name.
    expect(insert.name).toMatch(/^edm_[0-9a-f]{24}$/);
  });

  it("runs in the caller's transaction: rolled back with it, and seeing its uncommitted rows", async () => {
    await db
      .transaction(async (tx) => {
        expect((await queryNamed(tx, insert, [1, 'one'])).rows).toEqual([{ id: 1, note: 'one' }]);
        // Read through the transaction's own connection, before the commit.
        expect((await queryNamed(tx, count, [[1]])).rows).toEqual([{ n: 1 }]);
        expect((await db.query(`SELECT count(*)::int AS n FROM named_probe`))[0].n).toBe(0);
        throw new Error('roll back');
      })
      .catch((error: Error) => expect(error.message).toBe('roll back'));
    expect((await queryNamed(db, count, [[1]])).rows).toEqual([{ n: 0 }]);
  });

  it('is prepared once per connection and then reused', async () => {
    await db.transaction(async (tx) => {
      await queryNamed(tx, count, [[2]]);
      // pg_prepared_statements lists the statements this connection prepared.
      expect((await queryNamed(tx, prepared, [count.name])).rows).toEqual([{ n: 1 }]);
      expect((await queryNamed(tx, count, [[2]])).rows).toEqual([{ n: 0 }]);
    });
  });

  it("counts a write's rows and surfaces the database's error with its SQLSTATE", async () => {
    const update = new NamedStatement(`UPDATE named_probe SET note = $2 WHERE id = ANY ($1::int[])`);
    await queryNamed(db, insert, [3, 'three']);
    await queryNamed(db, insert, [4, 'four']);
    expect(await queryNamed(db, update, [[3, 4, 5], 'x'])).toEqual({ rows: [], rowCount: 2 });
    const error = await queryNamed(db, insert, [3, 'again']).catch((e: unknown) => e);
    expect(pgErrorCode(error)).toBe(PG_UNIQUE_VIOLATION);
    // The connection the failure happened on is still good for the next statement.
    expect((await queryNamed(db, count, [[3, 4]])).rows).toEqual([{ n: 2 }]);
  });
});
