import { Injectable } from '@nestjs/common';
import type { PoolClient, QueryConfig } from 'pg';
import { DataSource } from 'typeorm';
import { Metrics } from '@edm/observability';
import { refusesRows } from '@edm/persistence';
import { CommitSaturation } from '../processing/intake-yield';

export interface RawIntake {
  id: string;
  source: string;
  serviceId: string | null;
  path: string;
  headers: Record<string, string>;
  rawBody: string;
  verified: boolean;
}

interface Waiting {
  row: RawIntake;
  /** The row's headers as JSON, made as the request arrives: not between one commit and the next INSERT. */
  headers: string;
  resolve: (id: string) => void;
  reject: (error: unknown) => void;
}

const MAX_BATCH = 500;
const COLUMNS = 7;
/**
 * Batches of up to this many rows go as named statements: Postgres parses and plans each size
 * once per connection and then only binds it, where parsing and planning a fresh multi-row
 * VALUES was about half of its work on the INSERT (docs/benchmarks.md). Bounded, so that each
 * connection keeps at most this many small prepared statements; larger batches, which only a
 * load beyond that many requests in flight makes, go unnamed.
 */
export const NAMED_UP_TO = 64;
const statements: string[] = [];

/**
 * One parameter per value, so nothing is escaped on either side: a text array parameter would be
 * quoted and backslash-escaped here, element by element, and parsed back by Postgres, which for a
 * batch of JSON bodies cost more of this event loop than anything else in the intake.
 */
function insertStatement(rows: number): string {
  const tuples: string[] = [];
  for (let n = 0; n < rows * COLUMNS; n += COLUMNS) {
    tuples.push(
      `($${n + 1}::uuid, $${n + 2}, $${n + 3}::uuid, $${n + 4}, $${n + 5}::jsonb, $${n + 6}, $${n + 7}::boolean)`,
    );
  }
  return `INSERT INTO event_logs (id, source, service_id, path, headers, raw_body, verified) VALUES ${tuples.join(', ')}`;
}

/** The INSERT of a batch: named up to NAMED_UP_TO rows (its text built once per size). */
function insertQuery(batch: Waiting[]): QueryConfig {
  const rows = batch.length;
  if (rows > NAMED_UP_TO) return { text: insertStatement(rows), values: insertValues(batch) };
  const text = (statements[rows] ??= insertStatement(rows));
  return { name: `edm_intake_insert_${rows}`, text, values: insertValues(batch) };
}

function insertValues(batch: Waiting[]): unknown[] {
  const values: unknown[] = new Array(batch.length * COLUMNS);
  let i = 0;
  for (const { row, headers } of batch) {
    values[i++] = row.id;
    values[i++] = row.source;
    values[i++] = row.serviceId;
    values[i++] = row.path;
    values[i++] = headers;
    values[i++] = row.rawBody;
    values[i++] = row.verified;
  }
  return values;
}

/** A pool connection kept while a burst lasts; `release(error)` destroys it. */
interface HeldConnection {
  client: PoolClient;
  release: (error?: Error) => void;
}

/** The part of TypeORM's Postgres driver that hands out its pool's connections. */
interface PoolDriver {
  obtainMasterConnection(): Promise<[PoolClient, (error?: Error) => void]>;
}

/**
 * Store first, with group commit: requests that arrive while one INSERT is in flight are written
 * together by the next one, so many webhooks share one transaction (one fsync). A request is
 * answered only after its row committed; if Postgres fails, every request of that batch gets the
 * error (and a 503), never a 2xx.
 *
 * A burst holds one pool connection, and the next batch goes to Postgres before the last one is
 * answered: writing the answers is this event loop's work, and the round trip runs meanwhile.
 */
@Injectable()
export class RawIntakeWriter {
  private committed = 0;
  private transactions = 0;
  private readonly saturation = new CommitSaturation();
  private queue: Waiting[] = [];
  private flushing = false;
  private readonly listeners: (() => void)[] = [];
  private connection?: HeldConnection;
  private readonly batchSize;

  constructor(
    private readonly dataSource: DataSource,
    metrics: Metrics,
  ) {
    this.batchSize = metrics.histogram(
      'edm_webhook_commit_batch_size',
      'Webhook requests committed per transaction.',
      [],
      [1, 2, 5, 10, 20, 50, 100, 200, 500],
    );
  }

  /** Requests committed since start. */
  get stored(): number {
    return this.committed;
  }

  /** Transactions that committed requests since start (stored / commits: the group commit's size). */
  get commits(): number {
    return this.transactions;
  }

  /** The share of the requests over about the last second committed in full commits (CommitSaturation). */
  saturatedShare(): number {
    return this.saturation.share(performance.now());
  }

  /** Requests committed per second over about the last second. */
  storedPerSecond(): number {
    return this.saturation.requestsPerSecond(performance.now());
  }

  onStored(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** The row's id once it committed. */
  store(row: RawIntake): Promise<string> {
    return new Promise((resolve, reject) => {
      this.queue.push({ row, headers: JSON.stringify(row.headers), resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    let batch = this.queue.splice(0, MAX_BATCH);
    let insert = this.insert(batch);
    const sendNext = () => {
      const next = this.queue.splice(0, MAX_BATCH);
      if (next.length) insert = this.insert(next);
      return next;
    };
    while (batch.length) {
      let next: Waiting[];
      try {
        await insert;
        next = sendNext();
        this.recordCommit(batch);
      } catch (error) {
        // One query at a time on the connection: the next batch waits for the retries.
        await this.settleApart(batch, error);
        next = sendNext();
      }
      this.listeners.forEach((l) => l());
      batch = next;
    }
    this.release();
    this.flushing = false;
  }

  /**
   * One row the database refuses must not fail the requests it was batched with; any other failure
   * (connection lost, server shutting down) would fail each row alike, so the batch fails at once.
   */
  private async settleApart(batch: Waiting[], error: unknown): Promise<void> {
    if (batch.length === 1 || !refusesRows(error)) return batch.forEach((w) => w.reject(error));
    for (const waiting of batch) {
      await this.insert([waiting]).then(() => this.recordCommit([waiting]), waiting.reject);
    }
  }

  /** A transaction committed these requests: counted, and each answered. */
  private recordCommit(batch: Waiting[]): void {
    this.batchSize.observe(batch.length);
    this.committed += batch.length;
    this.transactions += 1;
    this.saturation.record(batch.length, performance.now());
    batch.forEach((w) => w.resolve(w.row.id));
  }

  /**
   * Sends at once when the burst's connection is held (no await before the query). A failed
   * INSERT gives its connection back as broken: the next one takes a fresh connection.
   */
  private async insert(batch: Waiting[]): Promise<void> {
    const connection = this.connection ?? (this.connection = await this.connect());
    try {
      await connection.client.query(insertQuery(batch));
    } catch (error) {
      if (this.connection === connection) this.connection = undefined;
      connection.release(error instanceof Error ? error : new Error(String(error)));
      throw error;
    }
  }

  private async connect(): Promise<HeldConnection> {
    const [client, release] = await (
      this.dataSource.driver as unknown as PoolDriver
    ).obtainMasterConnection();
    return { client, release };
  }

  /** The connection goes back to the pool between bursts (and so before shutdown closes the pool). */
  private release(): void {
    this.connection?.release();
    this.connection = undefined;
  }
}
