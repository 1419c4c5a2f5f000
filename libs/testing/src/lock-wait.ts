/** Anything that runs a query and answers rows (a TypeORM DataSource, a pg Client's rows). */
interface Queryable {
  query(sql: string): Promise<{ n: number }[]>;
}

/**
 * Waits until a session of this database waits for a row lock: the moment a test that holds a
 * lock in one transaction knows the other is blocked behind it.
 */
export async function untilWaitingForALock(db: Queryable, attempts = 200): Promise<void> {
  for (let i = 0; i < attempts; i += 1) {
    const [{ n }] = await db.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    if (n > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('nothing waited for a lock');
}
