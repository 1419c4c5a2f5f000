import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { EVENTS_APPENDED_CHANNEL, EventStore, GlobalCheckpoint, START } from '@edm/event-store';
import { NamedStatement, queryNamed } from '@edm/persistence';
import { JetStreamService } from './jetstream.service';

export interface OutboxRelayOptions {
  databaseUrl: string;
  /** One relay per name is active across every process; the others stand by. */
  name: string;
  batchSize: number;
  pollIntervalMs: number;
  log: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
}

export type RelayRole = 'stopped' | 'standby' | 'active';

const RELAY_LOCK_CLASS = 7_414_002;
const HELD_BACK_RETRY_MS = 10;

/** Moves the checkpoint forward only (a relay that lost its lock can never move it back). */
const CHECKPOINT = new NamedStatement(
  `UPDATE relay_checkpoints
      SET tx_id = $2::xid8, position = $3, published = published + $4, updated_at = now()
    WHERE name = $1 AND (tx_id, position) < ($2::xid8, $3::bigint)`,
);

/** Whether any event lies past the checkpoint (see heldBack). */
const ANY_PAST = new NamedStatement(
  `SELECT 1 FROM events WHERE (tx_id, global_position) > ($1::xid8, $2::bigint)
    ORDER BY tx_id, global_position LIMIT 1`,
);

/**
 * Publishes committed events from the events table (the outbox) to JetStream, in commit-safe
 * order, with the event id as Nats-Msg-Id. The active relay holds a session advisory lock on its
 * own connection; when its process dies the lock goes with the connection and a standby takes
 * over from the last checkpoint. Republishing what the dead relay had sent but not checkpointed
 * is harmless: the stream drops duplicate message ids.
 */
export class OutboxRelay {
  private client?: Client;
  private running = false;
  private loop?: Promise<void>;
  private wake?: () => void;
  private checkpoint: GlobalCheckpoint = START;
  role: RelayRole = 'stopped';
  /** Names this relay's Postgres session (application_name), so operators can find the holder. */
  readonly instanceId = randomBytes(4).toString('hex');
  published = 0;
  lastPublishedAt?: Date;

  constructor(
    private readonly dataSource: DataSource,
    private readonly store: EventStore,
    private readonly jetstream: JetStreamService,
    private readonly options: OutboxRelayOptions,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.role = 'standby';
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    this.role = 'stopped';
  }

  /** Events committed but not yet published by this relay's checkpoint (an upper bound). */
  async lag(): Promise<number> {
    const [row] = await this.dataSource.query(
      `SELECT (SELECT coalesce(max(global_position), 0) FROM events) -
              coalesce((SELECT position FROM relay_checkpoints WHERE name = $1), 0) AS lag`,
      [this.options.name],
    );
    return Math.max(0, Number(row.lag));
  }

  private async run(): Promise<void> {
    let interruption: string | undefined;
    while (this.running) {
      let keepConnection = false;
      try {
        // Without the bus it could not publish: it leaves the lock to a process that has one.
        if (this.jetstream.isConnected() && (await this.acquire())) {
          this.role = 'active';
          this.options.log('info', 'outbox relay active', { relay: this.options.name });
          await this.relayWhileActive();
        } else {
          // Standing by: the same session asks for the lock again next time, no reconnect.
          keepConnection = true;
        }
        interruption = undefined;
      } catch (error) {
        // Logged when it starts or changes: a bus that is down for minutes is one line, not one
        // line per poll.
        if (String(error) !== interruption)
          this.options.log('warn', 'outbox relay interrupted', {
            relay: this.options.name,
            error: String(error),
          });
        interruption = String(error);
      }
      if (this.role === 'active')
        this.options.log('info', 'outbox relay standing by', { relay: this.options.name });
      this.role = this.running ? 'standby' : 'stopped';
      // After being active, or after any error, the session goes: with it goes the lock, so a
      // relay whose NATS or Postgres connection broke lets a healthier process take over.
      if (!keepConnection) await this.release();
      await this.sleep(this.options.pollIntervalMs);
    }
    await this.release();
  }

  private async acquire(): Promise<boolean> {
    if (!this.client) {
      const client = new Client({
        connectionString: this.options.databaseUrl,
        application_name: `relay:${this.options.name}:${this.instanceId}`,
        connectionTimeoutMillis: 5_000,
      });
      client.on('error', () => this.wake?.());
      client.on('notification', () => this.wake?.());
      await client.connect().catch(async (error: unknown) => {
        await client.end().catch(() => undefined);
        throw error;
      });
      this.client = client;
    }
    const client = this.client;
    const [{ locked }] = (
      await client.query('SELECT pg_try_advisory_lock($1, hashtext($2)) AS locked', [
        RELAY_LOCK_CLASS,
        this.options.name,
      ])
    ).rows;
    if (!locked) return false;
    await client.query(`LISTEN ${EVENTS_APPENDED_CHANNEL}`);
    await client.query(`INSERT INTO relay_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING`, [
      this.options.name,
    ]);
    const { rows } = await client.query(
      `SELECT tx_id::text, position::text FROM relay_checkpoints WHERE name = $1`,
      [this.options.name],
    );
    this.checkpoint = { txId: rows[0].tx_id, position: rows[0].position };
    return true;
  }

  private async relayWhileActive(): Promise<void> {
    while (this.running && this.client) {
      const batch = await this.store.readAllJson(this.checkpoint, this.options.batchSize);
      if (batch.length === 0) {
        // Committed events held back behind a transaction still in flight (anywhere in the
        // cluster) come free without a notification: look again soon rather than a poll later.
        await this.sleep((await this.heldBack()) ? HELD_BACK_RETRY_MS : this.options.pollIntervalMs);
        continue;
      }
      // Pipelined: every publish is sent before any ack is awaited; one connection keeps order.
      await this.jetstream.publishMany(
        batch.map((e) => ({
          subject: this.jetstream.subjectOfStored(e.type, e.mailEventType),
          payload: e.json,
          msgId: e.id,
        })),
      );
      const next = batch[batch.length - 1].checkpoint;
      // Written on the lock's own connection: if that connection is gone, so is our right to write.
      await this.client.query(CHECKPOINT.query([this.options.name, next.txId, next.position, batch.length]));
      this.checkpoint = next;
      this.published += batch.length;
      this.lastPublishedAt = new Date();
    }
  }

  /**
   * Whether any event lies past the checkpoint, readable or not yet. A top-level ordered LIMIT 1,
   * so the planner walks events_tx_position from the checkpoint: inside EXISTS the order is
   * dropped, and the row comparison's estimate (about the whole table) makes it choose a
   * sequential scan, every few milliseconds, of a table that only grows.
   */
  private async heldBack(): Promise<boolean> {
    const { rows } = await queryNamed(this.dataSource, ANY_PAST, [
      this.checkpoint.txId,
      this.checkpoint.position,
    ]);
    return rows.length > 0;
  }

  private async release(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) await client.end().catch(() => undefined);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}
