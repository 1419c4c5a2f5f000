import { Pool } from 'pg';
import { DataSource } from 'typeorm';
import { uuidv7 } from '@edm/event-store';
import { Metrics } from '@edm/observability';
import { createDataSource, runMigrations } from '@edm/persistence';
import { createTestEnvironment, TestEnvironment } from '@edm/testing';
import { NAMED_UP_TO, RawIntake, RawIntakeWriter } from './raw-intake.writer';

/** The intake's group commit against a real database: what is answered is stored, whatever fails. */
describe('raw intake writer (Postgres)', () => {
  let env: TestEnvironment;
  let db: DataSource;
  let observer: Pool;
  let metrics: Metrics;
  let writer: RawIntakeWriter;

  const row = (id = uuidv7()): RawIntake => ({
    id,
    source: 'sandbox',
    serviceId: null,
    path: '/api/webhooks/mail-event',
    headers: { 'content-type': 'application/json' },
    rawBody: JSON.stringify({ id, quote: 'a "quoted", {braced} \\ body' }),
    verified: false,
  });
  const storedIds = async (ids: string[]) =>
    (await observer.query(`SELECT id FROM event_logs WHERE id = ANY ($1::uuid[])`, [ids])).rows.map(
      (r: { id: string }) => r.id,
    );
  const transactions = async () =>
    (await metrics.registry.getSingleMetricAsString('edm_webhook_commit_batch_size'))
      .split('\n')
      .find((line) => line.startsWith('edm_webhook_commit_batch_size_count'));
  const pool = () => (db.driver as unknown as { master: { totalCount: number; idleCount: number } }).master;

  beforeAll(async () => {
    env = await createTestEnvironment('intake_writer');
    db = createDataSource({ url: env.databaseUrl, poolSize: 4, applicationName: 'intake-test' });
    await db.initialize();
    await runMigrations(db);
    observer = new Pool({ connectionString: env.databaseUrl, max: 4, application_name: 'intake-observer' });
    // A connection the last test terminates may sit idle in this pool too: dropped, not thrown.
    observer.on('error', () => undefined);
  });

  beforeEach(() => {
    metrics = new Metrics('test');
    writer = new RawIntakeWriter(db, metrics);
  });

  afterAll(async () => {
    await observer.end();
    await db.destroy();
    await env.dispose();
  });

  it('answers each request only once its row is committed, many to a transaction', async () => {
    const rows = Array.from({ length: 300 }, () => row());
    const seenAtAnswer = await Promise.all(
      rows.map((r) => writer.store(r).then(async () => (await storedIds([r.id])).length)),
    );
    expect(seenAtAnswer).toEqual(rows.map(() => 1));
    expect(writer.stored).toBe(300);
    const count = Number((await transactions())?.split(' ').pop());
    expect(count).toBeGreaterThan(0);
    expect(count).toBeLessThan(300);
    expect(writer.commits).toBe(count);
    // The burst's connection went back to the pool.
    expect(pool().idleCount).toBe(pool().totalCount);
  });

  it('stores every value exactly as received, in batches up to the largest', async () => {
    const hostile = [
      `{"a":"quote \\" and backslash \\\\"}`,
      `'); DROP TABLE event_logs; --`,
      `$1 $2::uuid {"$7": null} \\N \\. E'\\x00'`,
      'line\nbreak\r\ttab',
      ' \r\n{"padded": true}\n\t ',
      '{"text":"ünïcødé 中文 🙂"}',
      '{' + '"k":"v",'.repeat(8_000) + '"end":1}',
      '[' + '['.repeat(30) + ']'.repeat(30) + ']',
    ];
    const serviceId = uuidv7();
    const rows = Array.from({ length: 1_200 }, (_, i): RawIntake => ({
      id: uuidv7(),
      source: i % 3 === 0 ? 'sendgrid' : 'engagelab',
      serviceId: i % 2 === 0 ? null : serviceId,
      path: `/api/webhooks/sendgrid/${serviceId}?q="${i}"`,
      headers: {
        'content-type': 'application/json',
        'x-odd': `"${hostile[i % hostile.length].slice(0, 40)}"`,
      },
      rawBody: hostile[i % hostile.length],
      verified: i % 5 === 0,
    }));
    await Promise.all(rows.map((r) => writer.store(r)));
    const stored = new Map(
      (
        await observer.query(
          `SELECT id, source, service_id, path, headers, raw_body, verified FROM event_logs WHERE id = ANY ($1::uuid[])`,
          [rows.map((r) => r.id)],
        )
      ).rows.map((r: Record<string, unknown>) => [r.id, r]),
    );
    expect(stored.size).toBe(rows.length);
    for (const r of rows) {
      expect(stored.get(r.id)).toEqual({
        id: r.id,
        source: r.source,
        service_id: r.serviceId,
        path: r.path,
        headers: r.headers,
        raw_body: r.rawBody,
        verified: r.verified,
      });
    }
    // 1,200 requests at once take three INSERTs or more: one holds 500 at most.
    expect(Number((await transactions())?.split(' ').pop())).toBeGreaterThanOrEqual(3);
  });

  it('fails only the request whose row the database refuses, not those batched with it', async () => {
    const taken = uuidv7();
    await observer.query(
      `INSERT INTO event_logs (id, source, path, headers, raw_body, verified) VALUES ($1, 'x', '/', '{}', '', false)`,
      [taken],
    );
    const rows = [
      ...Array.from({ length: 10 }, () => row()),
      row(taken),
      ...Array.from({ length: 10 }, () => row()),
    ];
    const outcomes = await Promise.allSettled(rows.map((r) => writer.store(r)));
    expect(outcomes.map((o) => o.status)).toEqual(
      rows.map((r) => (r.id === taken ? 'rejected' : 'fulfilled')),
    );
    const others = rows.filter((r) => r.id !== taken).map((r) => r.id);
    expect((await storedIds(others)).sort()).toEqual([...others].sort());
    expect(writer.stored).toBe(20);
  });

  it('prepares each batch size once per connection, up to NAMED_UP_TO rows, and reuses it', async () => {
    // One connection, so the test reads the writer's own session.
    const single = createDataSource({
      url: env.databaseUrl,
      poolSize: 1,
      applicationName: 'intake-test-named',
    });
    await single.initialize();
    try {
      const named = new RawIntakeWriter(single, new Metrics('test'));
      // Stored in one turn, a burst goes as its first row alone, then the rest in one batch.
      const burst = async (size: number) => {
        const rows = Array.from({ length: size }, () => row());
        await Promise.all(rows.map((r) => named.store(r)));
        return rows.map((r) => r.id);
      };
      const ids = [
        ...(await burst(NAMED_UP_TO + 2)), // 1, then NAMED_UP_TO + 1: unnamed
        ...(await burst(NAMED_UP_TO + 1)), // 1 again, then NAMED_UP_TO
        ...(await burst(NAMED_UP_TO + 1)), // both sizes again, bound to what was prepared
      ];
      expect((await storedIds(ids)).sort()).toEqual([...ids].sort());
      expect(named.commits).toBe(6);
      const prepared = await single.query(`SELECT name FROM pg_prepared_statements ORDER BY name`);
      expect(prepared.map((p: { name: string }) => p.name)).toEqual([
        'edm_intake_insert_1',
        `edm_intake_insert_${NAMED_UP_TO}`,
      ]);
    } finally {
      await single.destroy();
    }
  });

  it('loses nothing it answered when its connection is killed mid-burst, and stores again after', async () => {
    const answered: string[] = [];
    let refused = 0;
    const pending: Promise<void>[] = [];
    for (let round = 0; round < 40; round += 1) {
      for (let i = 0; i < 25; i += 1) {
        const r = row();
        pending.push(
          writer.store(r).then(
            () => void answered.push(r.id),
            () => void (refused += 1),
          ),
        );
      }
      if (round === 20)
        await observer.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND application_name = 'intake-test' AND pid <> pg_backend_pid()`,
        );
      await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(pending);
    expect(answered.length + refused).toBe(1_000);
    expect((await storedIds(answered)).length).toBe(answered.length);
    const after = row();
    await writer.store(after);
    expect(await storedIds([after.id])).toEqual([after.id]);
  });
});
