import {
  DataSource,
  EntityManager,
  EntitySubscriberInterface,
  TransactionCommitEvent,
  TransactionRollbackEvent,
} from 'typeorm';
import { DomainEvent, EVENT_MAX_BYTES, EventMetadata, EventType, NewEvent } from '@edm/events';
import { NamedStatement, PG_UNIQUE_VIOLATION, pgErrorCode, queryNamed } from '@edm/persistence';
import { ConcurrencyError, EventTooLargeError, expectedAsNumber, ExpectedVersion } from './expected-version';
import { Projection } from './projection';
import { uuidv7 } from './uuid-v7';

export interface StreamAppend {
  streamId: string;
  expectedVersion: ExpectedVersion;
  events: readonly NewEvent[];
  /** This stream's events' metadata, when it differs from the call's (a batch of unrelated causes). */
  metadata?: EventMetadata;
}

/** A position in the commit-safe global order: (transaction id, position within it). */
export interface GlobalCheckpoint {
  txId: string;
  position: string;
}

export const START: GlobalCheckpoint = { txId: '0', position: '0' };

interface EventRow {
  global_position: string;
  tx_id: string;
  id: string;
  stream_id: string;
  version: number;
  type: string;
  data: unknown;
  metadata: EventMetadata;
  occurred_at: Date;
}

export interface GlobalEvent {
  event: DomainEvent;
  checkpoint: GlobalCheckpoint;
}

const toEvent = (row: Omit<EventRow, 'global_position' | 'tx_id'>): DomainEvent =>
  ({
    id: row.id,
    type: row.type,
    streamId: row.stream_id,
    version: row.version,
    occurredAt: row.occurred_at.toISOString(),
    data: row.data,
    metadata: row.metadata,
  }) as DomainEvent;

/**
 * The events after a checkpoint ($1 transaction id, $2 position) that no transaction still in
 * flight can precede, in commit-safe order, at most $3.
 */
const COMMIT_SAFE_AFTER = `WHERE (tx_id, global_position) > ($1::xid8, $2::bigint) AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
  ORDER BY tx_id, global_position LIMIT $3`;

/**
 * Every append, named: the batch goes as arrays (one row each per event), the data and metadata
 * as one JSON array each. A row whose `check_version` is set is inserted only if its stream's
 * event of that version exists (the expected version of a stream that must exist).
 */
const INSERT_EVENTS = new NamedStatement(
  `INSERT INTO events (id, stream_id, version, type, data, metadata)
   SELECT u.id, u.stream, u.version, u.type, $5::jsonb -> (u.n::int - 1), $7::jsonb -> u.metadata_index
     FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $6::int[], $8::int[]) WITH ORDINALITY
          AS u(id, stream, version, type, check_version, metadata_index, n)
    WHERE u.check_version IS NULL
       OR EXISTS (SELECT 1 FROM events e WHERE e.stream_id = u.stream AND e.version = u.check_version)
   RETURNING id, occurred_at`,
);

/** The relay's read: committed events past a checkpoint, each as the text of its envelope's parts. */
const READ_ALL_JSON = new NamedStatement(
  `SELECT global_position, tx_id, id, stream_id, version, type, data::text AS data, metadata::text AS metadata,
          to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS occurred_at,
          CASE WHEN type IN ('MailEventRecorded', 'MailEventsRecorded') THEN data->>'type' END AS mail_event_type
     FROM events ${COMMIT_SAFE_AFTER}`,
);

/** A committed event as the JSON text of its envelope, ready to publish (readAllJson). */
export interface GlobalEventJson {
  id: string;
  type: EventType;
  /** For recorded provider events, their provider event's type (it names the subject); else null. */
  mailEventType: string | null;
  /** The envelope, the same fields and shape as JSON.stringify of the DomainEvent. */
  json: string;
  checkpoint: GlobalCheckpoint;
}

/** The channel the outbox relay listens on: notified after each commit that appended events. */
export const EVENTS_APPENDED_CHANNEL = 'edm_events';

/** Set in a query runner's `data` when its transaction appended events. */
const APPENDED = 'edmEventsAppended';

/**
 * Tells the relay that events were committed: once after the outermost commit of a transaction
 * that appended, outside that transaction. A NOTIFY inside it (the trigger this replaces) makes
 * Postgres take one lock for the whole cluster at commit and hold it through the commit's WAL
 * flush: every commit that appended events waited for the one before it, and none shared a
 * flush (docs/benchmarks.md). At most one notification is in flight and one more waits behind
 * it, so a burst of commits costs two. One that fails is not retried: the relay also polls
 * (RELAY_POLL_INTERVAL_MS), so a lost notification costs at most one interval.
 */
class CommitNotifier implements EntitySubscriberInterface {
  private sending = false;
  private again = false;

  constructor(private readonly dataSource: DataSource) {}

  afterTransactionCommit({ queryRunner }: TransactionCommitEvent): void {
    if (queryRunner.isTransactionActive || !queryRunner.data[APPENDED]) return;
    delete queryRunner.data[APPENDED];
    this.notify();
  }

  afterTransactionRollback({ queryRunner }: TransactionRollbackEvent): void {
    // A savepoint rolled back leaves the mark: the outer commit may still hold events (a
    // notification for nothing costs the relay one empty read).
    if (!queryRunner.isTransactionActive) delete queryRunner.data[APPENDED];
  }

  notify(): void {
    if (this.sending) {
      this.again = true;
      return;
    }
    if (!this.dataSource.isInitialized) return;
    this.sending = true;
    this.dataSource
      .query(`SELECT pg_notify($1, '')`, [EVENTS_APPENDED_CHANNEL])
      .catch(() => undefined)
      .finally(() => {
        this.sending = false;
        if (this.again) {
          this.again = false;
          this.notify();
        }
      });
  }
}

export class EventStore {
  private readonly projections: Projection[] = [];
  /** The projections of each event type, in registration order (made on first use). */
  private readonly handlers = new Map<string, readonly Projection[]>();
  private readonly notifier: CommitNotifier;

  constructor(private readonly dataSource: DataSource) {
    this.notifier = new CommitNotifier(dataSource);
  }

  register(...projections: Projection[]): void {
    for (const projection of projections) {
      if (!this.projections.some((p) => p.name === projection.name)) this.projections.push(projection);
    }
    this.handlers.clear();
  }

  get registered(): readonly Projection[] {
    return this.projections;
  }

  /**
   * Appends to one or many streams in the caller's transaction and applies the inline
   * projections there too. Every stream's expected version is checked in the same statement:
   * a stream that moved on, or one expected to exist that does not, is a ConcurrencyError.
   */
  async append(
    tx: EntityManager,
    appends: readonly StreamAppend[],
    metadata: EventMetadata,
    { alreadyProjected = false } = {},
  ): Promise<DomainEvent[]> {
    const rows: {
      id: string;
      stream: string;
      version: number;
      type: string;
      data: string;
      check: number | null;
      metadata: string;
      /** Position of `metadata` in the JSON array of the call's distinct metadata texts. */
      metadataIndex: number;
    }[] = [];
    const shared = JSON.stringify(metadata);
    // Each distinct metadata text is sent and parsed once (one JSON array of them), not once per
    // event: a batch's events usually share one. The data go as one JSON array too.
    const metadataTexts = new Map<string, number>();
    const indexOf = (text: string) => {
      let index = metadataTexts.get(text);
      if (index === undefined) metadataTexts.set(text, (index = metadataTexts.size));
      return index;
    };
    // A stream may come back later in the same call (one batch, several causes): it continues
    // from its own rows here, whose existence the statement cannot check yet.
    const lastInCall = new Map<string, number>();
    for (const append of appends) {
      const base = expectedAsNumber(append.expectedVersion);
      const continues =
        lastInCall.has(append.streamId) && (base === null || base === lastInCall.get(append.streamId));
      let version =
        base ?? lastInCall.get(append.streamId) ?? (await this.currentVersion(tx, append.streamId));
      const own = append.metadata ? JSON.stringify(append.metadata) : shared;
      append.events.forEach((event, index) => {
        version += 1;
        const data = JSON.stringify(event.data);
        // UTF-8 takes at most three bytes a UTF-16 unit: only a long text needs counting.
        if ((data.length + own.length) * 3 > EVENT_MAX_BYTES) {
          const bytes = Buffer.byteLength(data) + Buffer.byteLength(own);
          if (bytes > EVENT_MAX_BYTES) throw new EventTooLargeError(event.type, bytes, EVENT_MAX_BYTES);
        }
        rows.push({
          id: uuidv7(),
          stream: append.streamId,
          version,
          type: event.type,
          data,
          // Only the first event of a stream carries the check that its predecessor exists.
          check: index === 0 && base !== null && base > 0 && !continues ? base : null,
          metadata: own,
          metadataIndex: indexOf(own),
        });
      });
      lastInCall.set(append.streamId, version);
    }
    if (rows.length === 0) return [];
    let inserted: { id: string; occurred_at: Date }[];
    try {
      ({ rows: inserted } = await queryNamed<{ id: string; occurred_at: Date }>(tx, INSERT_EVENTS, [
        rows.map((r) => r.id),
        rows.map((r) => r.stream),
        rows.map((r) => r.version),
        rows.map((r) => r.type),
        // One JSON array: the events' data need no escaping as elements of a text array.
        `[${rows.map((r) => r.data).join(',')}]`,
        rows.map((r) => r.check),
        `[${[...metadataTexts.keys()].join(',')}]`,
        rows.map((r) => r.metadataIndex),
      ]));
    } catch (error) {
      if (pgErrorCode(error) === PG_UNIQUE_VIOLATION) {
        throw new ConcurrencyError(appends.map((a) => a.streamId).join(','), appends[0].expectedVersion);
      }
      throw error;
    }
    if (inserted.length !== rows.length) {
      const missing = rows.find((r) => !inserted.some((i) => i.id === r.id));
      const append = appends.find((a) => a.streamId === missing?.stream) ?? appends[0];
      throw new ConcurrencyError(append.streamId, append.expectedVersion);
    }
    // The events as stored, from what was sent (parsed back from the same JSON text, as jsonb
    // would give it): returning the jsonb columns would have Postgres print them for nothing.
    const occurredAt = new Map(inserted.map((i) => [i.id, i.occurred_at]));
    const metadataOf = new Map<string, EventMetadata>();
    const events = rows.map((r) => {
      let metadata = metadataOf.get(r.metadata);
      if (!metadata) metadataOf.set(r.metadata, (metadata = JSON.parse(r.metadata) as EventMetadata));
      return toEvent({
        id: r.id,
        stream_id: r.stream,
        version: r.version,
        type: r.type,
        data: JSON.parse(r.data),
        metadata,
        occurred_at: occurredAt.get(r.id)!,
      });
    });
    // alreadyProjected: the caller's own statement set the rows exactly as the projection would
    // (the dispatcher's one-statement lease); a rebuild still applies these events.
    if (!alreadyProjected) await this.project(tx, events);
    this.appended(tx);
    return events;
  }

  /**
   * The relay is told once the events are committed: after the caller's transaction commits, or
   * at once for a manager outside a transaction (each of its statements commits by itself).
   */
  private appended(tx: EntityManager): void {
    // Added on first use: a DataSource sets its subscribers when it is initialised.
    if (!this.dataSource.subscribers.includes(this.notifier)) this.dataSource.subscribers.push(this.notifier);
    const runner = tx.queryRunner;
    if (runner?.isTransactionActive) runner.data[APPENDED] = true;
    else this.notifier.notify();
  }

  /** Convenience for one stream in its own transaction. */
  async appendToStream(
    streamId: string,
    expectedVersion: ExpectedVersion,
    events: readonly NewEvent[],
    metadata: EventMetadata,
  ): Promise<DomainEvent[]> {
    return this.dataSource.transaction((tx) =>
      this.append(tx, [{ streamId, expectedVersion, events }], metadata),
    );
  }

  /**
   * Applies `events` in their order. Each projection takes a run of consecutive events at once,
   * and a run ends where the next event is for other projections: one projection may write
   * another's table (a cancelled task cancels its pending sub-tasks), so applying each
   * projection to the whole batch in turn let a task's cancel in a rebuild run before the
   * retries that had put its sub-tasks back to pending, and the rebuilt rows stayed pending.
   */
  async project(tx: EntityManager, events: readonly DomainEvent[]): Promise<void> {
    const handlersOf = (event: DomainEvent) => {
      let handlers = this.handlers.get(event.type);
      if (!handlers) {
        handlers = this.projections.filter((p) => p.handles.includes(event.type));
        this.handlers.set(event.type, handlers);
      }
      return handlers;
    };
    let start = 0;
    while (start < events.length) {
      const handlers = handlersOf(events[start]);
      let end = start + 1;
      while (end < events.length && sameHandlers(handlersOf(events[end]), handlers)) end += 1;
      const run = events.slice(start, end);
      for (const projection of handlers) await projection.apply(tx, run);
      start = end;
    }
  }

  async currentVersion(tx: EntityManager, streamId: string): Promise<number> {
    const [row] = await tx.query(`SELECT coalesce(max(version), 0) AS v FROM events WHERE stream_id = $1`, [
      streamId,
    ]);
    return Number(row.v);
  }

  async readStream(
    streamId: string,
    fromVersion = 1,
    manager: EntityManager = this.dataSource.manager,
  ): Promise<DomainEvent[]> {
    const rows: EventRow[] = await manager.query(
      `SELECT global_position, tx_id, id, stream_id, version, type, data, metadata, occurred_at
         FROM events WHERE stream_id = $1 AND version >= $2 ORDER BY version`,
      [streamId, fromVersion],
    );
    return rows.map(toEvent);
  }

  /**
   * Committed events after a checkpoint, in commit-safe order. Only transactions older than
   * every transaction still in flight are read, so one that commits late can never be passed.
   *
   * `locked` is for a reader holding the events table locked against writes (a rebuild): nothing
   * is in flight, so it reads in insertion order, which is also every stream's version order.
   * Transaction order is not: a transaction that took its id early may append a stream's next
   * version after a younger one appended the version before it.
   */
  async readAll(
    after: GlobalCheckpoint,
    limit: number,
    manager: EntityManager = this.dataSource.manager,
    { locked = false } = {},
  ): Promise<GlobalEvent[]> {
    const columns = 'global_position, tx_id, id, stream_id, version, type, data, metadata, occurred_at';
    const rows: EventRow[] = locked
      ? await manager.query(
          `SELECT ${columns} FROM events WHERE global_position > $1::bigint ORDER BY global_position LIMIT $2`,
          [after.position, limit],
        )
      : await manager.query(`SELECT ${columns} FROM events ${COMMIT_SAFE_AFTER}`, [
          after.txId,
          after.position,
          limit,
        ]);
    return rows.map((row) => ({
      event: toEvent(row),
      checkpoint: { txId: String(row.tx_id), position: String(row.global_position) },
    }));
  }

  /**
   * readAll's events (in its commit-safe order) as envelope JSON: the jsonb columns are taken as
   * the text Postgres prints, not parsed and printed again, for the relay, which only forwards it.
   */
  async readAllJson(
    after: GlobalCheckpoint,
    limit: number,
    manager: EntityManager = this.dataSource.manager,
  ): Promise<GlobalEventJson[]> {
    const { rows } = await queryNamed<
      Omit<EventRow, 'type' | 'data' | 'metadata' | 'occurred_at'> & {
        type: EventType;
        data: string;
        metadata: string;
        occurred_at: string;
        mail_event_type: string | null;
      }
    >(manager, READ_ALL_JSON, [after.txId, after.position, limit]);
    return rows.map((row) => ({
      id: row.id,
      type: row.type,
      mailEventType: row.mail_event_type,
      json:
        `{"id":${JSON.stringify(row.id)},"type":${JSON.stringify(row.type)},"streamId":${JSON.stringify(row.stream_id)},` +
        `"version":${row.version},"occurredAt":"${row.occurred_at}","data":${row.data},"metadata":${row.metadata}}`,
      checkpoint: { txId: String(row.tx_id), position: String(row.global_position) },
    }));
  }
}

/** The same cached list, or one equal to it. */
const sameHandlers = (a: readonly Projection[], b: readonly Projection[]) =>
  a === b || (a.length === b.length && a.every((p, i) => p === b[i]));
