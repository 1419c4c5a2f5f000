import { BeforeApplicationShutdown, Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { APP_CONFIG, AppConfig } from '@edm/config';
import { isMailEventType, MailEventType } from '@edm/domain';
import { EventData, EventMetadata, inPayloadParts, newEvent } from '@edm/events';
import { EventStore, StreamAppend, uuidv7 } from '@edm/event-store';
import { JsonLogger, Metrics } from '@edm/observability';
import { NamedStatement, queryNamed } from '@edm/persistence';
import { EventBusSubscriber } from '@edm/platform';
import { isWebhookProvider, ParsedMailEvent, ParseWebhookResult, parseWebhook } from '@edm/providers';
import { RawIntakeWriter } from '../intake/raw-intake.writer';
import { parseTrackingHit } from '../tracking/tracking-hit';
import { applyMailEvents, SubTaskState } from './apply-mail-event';
import { correlateAll, Correlation, MailEventClues } from './correlate-mail-event';
import { intakeYieldMs, ProcessingSpeed } from './intake-yield';

interface StoredRequest {
  id: string;
  source: string;
  service_id: string | null;
  raw_body: string;
  headers: Record<string, string>;
}

interface PendingMailEvent {
  id: string;
  event_log_id: string;
  provider: string;
  service_id: string | null;
  account_id: string | null;
  type: string | null;
  raw_type: string;
  occurred_at: Date;
  recipient: string | null;
  provider_message_ids: string[];
  tracking_id: string | null;
  task_id: string | null;
  header_message_id: string | null;
  reason: string | null;
  suppression: boolean;
  match_attempts: number;
  received_at: Date;
}

/** The columns of a PendingMailEvent. */
const PENDING_COLUMNS = `id, event_log_id, provider, service_id, account_id, type, raw_type, occurred_at, recipient,
  provider_message_ids, tracking_id, task_id, header_message_id, reason, suppression, match_attempts, received_at`;

interface Matched {
  event: PendingMailEvent;
  match: Correlation;
}

interface ParsedRequest {
  request: StoredRequest;
  result: ParseWebhookResult;
}

interface StoredMailEvent extends PendingMailEvent {
  dedupe_key: string;
}

/** Recorded sends are re-looked at in statements of at most this many, this often at most. */
const REMATCH_BATCH = 1_000;
const REMATCH_EVERY_MS = 50;

/**
 * A sub-task in one of these has no send on record, yet a provider event may be its own: its
 * dispatcher died after the provider accepted the mail, and the lease went back to `pending` to
 * be sent again (deduplicated by the provider). Such an event waits for the send to be recorded.
 */
const AWAITING_SEND: ReadonlySet<string> = new Set(['pending', 'allocated']);

/** Services whose account the processor keeps in memory. */
const SERVICE_ACCOUNTS_KEPT = 10_000;

const accountOf = (accounts: ReadonlyMap<string, string>, serviceId: string | null) =>
  serviceId ? (accounts.get(serviceId) ?? null) : null;

/**
 * When an event nothing matched is looked at again, after `attempts` looks: from 10 s, doubling,
 * up to five minutes. A recorded send makes the events that may be its own due at once
 * (`rematchSent`), so the schedule is only the net under that, and a flood of events for mail we
 * never sent (another sender on the same provider account) costs a few looks each, not dozens.
 */
const retryDelayMs = (attempts: number) => Math.min(300_000, 10_000 * 2 ** Math.min(attempts, 5));

/** Every form of the provider's message id an event carries, each once. */
const messageIdsOf = (event: ParsedMailEvent): string[] => [
  ...new Set([event.providerMessageId, ...event.messageIdCandidates].filter((id): id is string => !!id)),
];

/** What a stored event offers the correlation strategies. */
const cluesOf = (event: PendingMailEvent): MailEventClues => ({
  trackingId: event.tracking_id,
  providerMessageIds: event.provider_message_ids,
  headerMessageId: event.header_message_id,
  taskId: event.task_id,
  recipient: event.recipient,
  serviceId: event.service_id,
  accountId: event.account_id,
  occurredAt: event.occurred_at,
});

/** Rows a worker claims at once: small, so that concurrent workers share a burst. */
const BATCH = 50;

/** Stored requests not yet parsed, oldest first, claimed: concurrent workers take others. */
const CLAIM_STORED = new NamedStatement(
  `SELECT id, source, service_id, raw_body, headers FROM event_logs WHERE status = 'received'
    ORDER BY received_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
);

/** Matched sub-tasks, locked in id order (so concurrent workers never deadlock on them). */
const LOCK_SUB_TASKS = new NamedStatement(
  `SELECT id, task_id, contact_id, status, version FROM sub_tasks WHERE id = ANY ($1::uuid[])
    ORDER BY id FOR UPDATE`,
);

/**
 * A batch's outcome: each request's status, and its provider events inserted (the new ones come
 * back), matched or pending. See `storeParsed`.
 */
const STORE_PARSED = new NamedStatement(
  `WITH outcome AS (
     UPDATE event_logs e SET status = o.status, parse_error = o.note, events = o.events, processed_at = clock_timestamp()
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[]) AS o(id, status, note, events)
      WHERE e.id = o.id
   )
   INSERT INTO mail_events (id, event_log_id, provider, service_id, account_id, dedupe_key, type, raw_type, occurred_at, recipient,
                            provider_message_ids, tracking_id, task_id, header_message_id, url, reason, suppression,
                            match_status, match_strategy, sub_task_id, matched_task_id, match_attempts, next_match_at)
   SELECT u.id, u.event_log_id, u.provider, u.service_id, u.account_id, u.dedupe_key, u.type, u.raw_type, u.occurred_at, u.recipient,
          ARRAY(SELECT jsonb_array_elements_text(u.ids::jsonb)), u.tracking_id, u.task_id, u.header_message_id, u.url, u.reason,
          u.suppression, CASE WHEN u.sub_task_id IS NULL THEN 'pending' ELSE 'matched' END, u.strategy, u.sub_task_id,
          u.matched_task_id, CASE WHEN u.sub_task_id IS NULL THEN $25::int ELSE 1 END,
          CASE WHEN u.sub_task_id IS NULL THEN clock_timestamp() + make_interval(secs => $26::float8 / 1000)
               ELSE clock_timestamp() END
     FROM unnest($5::uuid[], $6::uuid[], $7::text[], $8::uuid[], $9::uuid[], $10::text[], $11::text[], $12::text[], $13::timestamptz[],
                 $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::boolean[],
                 $22::text[], $23::uuid[], $24::uuid[])
          AS u(id, event_log_id, provider, service_id, account_id, dedupe_key, type, raw_type, occurred_at, recipient, ids,
               tracking_id, task_id, header_message_id, url, reason, suppression, strategy, sub_task_id, matched_task_id)
   ON CONFLICT (dedupe_key) DO NOTHING
   RETURNING ${PENDING_COLUMNS}, dedupe_key`,
);

/**
 * Turns stored requests into provider events (deduplicated), then matches each to its sub-task
 * and applies it. Runs in every replica; rows are claimed with SKIP LOCKED. Woken when requests
 * are stored and when sends are recorded (an event may have outrun our own write), and polls.
 */
@Injectable()
export class MailEventProcessor implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly sleepers = new Set<() => void>();
  private readonly stopping = new Set<() => void>();
  private missedWakes = 0;
  /** Sub-tasks whose send was recorded since the last re-look (see rematchSent). */
  private readonly justSent = new Set<string>();
  private rematching = false;
  private readonly serviceAccounts = new Map<string, string>();
  /** When the retries' schedule is next looked at (ms since the epoch; 0: at once). */
  private matchDueAt = 0;
  private readonly speed = new ProcessingSpeed();
  private readonly events;
  private readonly strategyErrors;
  private readonly yields;
  private readonly yieldSeconds;

  constructor(
    private readonly dataSource: DataSource,
    private readonly store: EventStore,
    private readonly writer: RawIntakeWriter,
    private readonly bus: EventBusSubscriber,
    private readonly logger: JsonLogger,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    metrics: Metrics,
  ) {
    this.events = metrics.counter(
      'edm_webhook_events_total',
      'Provider events by provider, type and match result.',
      ['provider', 'type', 'match'],
    );
    this.strategyErrors = metrics.counter(
      'edm_webhook_strategy_errors_total',
      'Correlation strategies that failed (the next one still ran).',
      ['strategy'],
    );
    this.yields = metrics.counter(
      'edm_webhook_processing_yields_total',
      'Pauses of a processing worker that gave way to intake under a burst.',
      [],
    );
    this.yieldSeconds = metrics.counter(
      'edm_webhook_processing_yield_seconds_total',
      'Time processing workers paused to give way to intake under a burst.',
      [],
    );
  }

  onApplicationBootstrap(): void {
    this.writer.onStored(() => this.wake(1));
    this.bus.addListener((event) => {
      // The subject carries both forms of a recorded send: a batch, and one send as recorded
      // before batches (still published while a rollout drains the older dispatchers' work).
      const sent =
        event.type === 'SubTaskBatchSent'
          ? event.data.sent.map((send) => send.subTaskId)
          : event.type === 'SubTaskSent'
            ? [event.data.subTaskId]
            : [];
      if (sent.length === 0) return;
      // Bounded: past it (the database away for long), the schedule alone retries.
      for (const subTaskId of sent)
        if (this.justSent.size < REMATCH_BATCH * 100) this.justSent.add(subTaskId);
      this.rematchSoon();
    });
    this.running = true;
    // Several workers: each event is a chain of round trips, so one loop leaves the database
    // idle; rows are claimed with SKIP LOCKED, so workers never take the same one.
    this.loops = Array.from({ length: this.config.INGEST_WORKERS }, () => this.run());
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.running = false;
    this.wake();
    for (const stop of this.stopping) stop();
    await Promise.all(this.loops);
  }

  /**
   * Wakes `count` sleeping workers (all by default). New work wakes one, and a worker that finds
   * a full batch wakes the next, so a burst spreads over the workers and a trickle costs one. A
   * wake-up finding every worker busy is kept for the next one to fall asleep, so none is lost.
   */
  wake(count = Infinity): void {
    for (const wake of this.sleepers) {
      if (count <= 0) return;
      count -= 1;
      wake();
    }
    if (count !== Infinity) this.missedWakes = Math.min(this.missedWakes + count, this.config.INGEST_WORKERS);
  }

  /** One whole pass: parse what was stored, then match what is due. Returns how many rows it took. */
  async drain(): Promise<number> {
    const { parsed, matched } = await this.pass(true);
    return parsed + matched;
  }

  /**
   * Parses what was stored, then matches what is due: the retries' schedule is polled once per
   * INGEST_POLL_INTERVAL_MS across the workers, and at once when a send was recorded, the
   * careful path stored events unmatched, or the last look found a full batch.
   */
  private async pass(matchAnyway: boolean): Promise<{ parsed: number; events: number; matched: number }> {
    const { requests: parsed, events } = await this.processStored();
    if (parsed === BATCH) this.wake(1);
    if (!matchAnyway && Date.now() < this.matchDueAt) return { parsed, events, matched: 0 };
    this.matchDueAt = Date.now() + this.config.INGEST_POLL_INTERVAL_MS;
    const matched = await this.dataSource.transaction((tx) => this.matchDue(tx));
    if (matched === BATCH) {
      this.matchDueAt = 0;
      this.wake(1);
    }
    return { parsed, events, matched };
  }

  private async run(): Promise<void> {
    while (this.running) {
      let more = false;
      const started = performance.now();
      const mark = this.speed.begin(started);
      const storedBefore = this.writer.stored;
      const commitsBefore = this.writer.commits;
      try {
        const { parsed, events, matched } = await this.pass(false);
        // A partial batch took everything there was: what comes next wakes a worker.
        more = parsed === BATCH || matched === BATCH;
        this.speed.record(mark, parsed, events, parsed === BATCH, performance.now());
      } catch (error) {
        this.logger.event('error', 'webhook processing failed; will retry', { error: String(error) });
      }
      // Intake first under a burst: processing backs off for a multiple of the pass's own time,
      // and catches up at full speed once intake slows down.
      const pause = intakeYieldMs(
        {
          ms: performance.now() - started,
          more,
          stored: this.writer.stored - storedBefore,
          commits: this.writer.commits - commitsBefore,
          saturatedShare: this.writer.saturatedShare(),
          storedPerSecond: this.writer.storedPerSecond(),
          processedPerSecond: this.speed.perSecond(),
        },
        BATCH,
        this.config.INGEST_YIELD_FACTOR,
      );
      if (pause > 0) {
        this.yields.inc();
        this.yieldSeconds.inc(pause / 1_000);
        await this.yieldToIntake(pause);
      }
      if (more || !this.running) continue;
      if (this.missedWakes > 0) {
        this.missedWakes -= 1;
        continue;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.sleepers.delete(done);
          resolve();
        };
        const timer = setTimeout(done, this.config.INGEST_POLL_INTERVAL_MS);
        this.sleepers.add(done);
      });
    }
  }

  /** A pause that shutdown cuts short (new work does not: that is what it gives way to). */
  private yieldToIntake(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.stopping.delete(done);
        resolve();
      }, ms);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.stopping.add(done);
    });
  }

  /** Re-looks for the sends recorded so far, one statement at a time, every REMATCH_EVERY_MS at most. */
  private rematchSoon(): void {
    if (this.rematching || !this.running) return;
    this.rematching = true;
    setTimeout(() => {
      const ids = [...this.justSent].slice(0, REMATCH_BATCH);
      for (const id of ids) this.justSent.delete(id);
      this.rematchSent(ids)
        .catch((error: unknown) =>
          // The schedule still retries them; only the shortcut is lost.
          this.logger.event('warn', 'pending events not re-looked at for recorded sends', {
            error: String(error),
          }),
        )
        .finally(() => {
          this.rematching = false;
          if (this.justSent.size) this.rematchSoon();
        });
    }, REMATCH_EVERY_MS);
  }

  /**
   * An event may outrun the record of its send. When sends are recorded, the pending events
   * that may be theirs (same tracking id, provider message id or recipient) are due at once,
   * whatever their back-off, and a worker is woken. Returns how many were made due.
   */
  async rematchSent(subTaskIds: readonly string[]): Promise<number> {
    if (subTaskIds.length === 0) return 0;
    // One index lookup per clue (the partial indexes on pending events), then the rows by id: the
    // cost follows the sends, never the size of the pending backlog.
    const [, count]: [unknown, number] = await this.dataSource.query(
      `WITH s AS (SELECT tracking_id, provider_message_id, lower(email) AS email
                    FROM sub_tasks WHERE id = ANY ($1::uuid[]))
       UPDATE mail_events m SET next_match_at = clock_timestamp()
        WHERE m.id = ANY (ARRAY(
                SELECT p.id FROM s JOIN mail_events p ON p.tracking_id = s.tracking_id
                 WHERE p.match_status = 'pending'
                UNION
                SELECT p.id FROM s JOIN mail_events p ON p.provider_message_ids @> ARRAY[s.provider_message_id]
                 WHERE p.match_status = 'pending'
                UNION
                SELECT p.id FROM s JOIN mail_events p ON lower(p.recipient) = s.email
                 WHERE p.match_status = 'pending'))
          AND m.match_status = 'pending' AND m.next_match_at > clock_timestamp()`,
      [subTaskIds],
    );
    if (count > 0) {
      this.matchDueAt = 0;
      this.wake(1);
    }
    return count;
  }

  /**
   * The common case in one transaction: a batch of stored requests is parsed into provider
   * events, every event is matched by the five strategies (one statement each for the batch),
   * and the new ones are stored matched and applied at once; those nothing matched yet are stored
   * pending, backed off. If anything in it fails, nothing of it stays, and the careful path takes
   * the batch: request by request, matching left to `matchDue`. Returns how many requests it
   * took, and how many provider events they held.
   */
  private async processStored(): Promise<{ requests: number; events: number }> {
    try {
      const { taken, eventCount, matched } = await this.dataSource.transaction(async (tx) => {
        const stored = await this.claimStored(tx);
        if (stored.length === 0) return { taken: 0, eventCount: 0, matched: [] };
        const parsed = stored.map((request) => this.parse(request));
        const accounts = await this.accountsOf(tx, stored);
        const events = parsed.flatMap(({ request, result }) =>
          result.kind !== 'events'
            ? []
            : result.events.map((event) => ({
                key: event.dedupeKey,
                clues: {
                  trackingId: event.trackingId ?? null,
                  providerMessageIds: messageIdsOf(event),
                  headerMessageId: event.headerMessageId ?? null,
                  taskId: event.taskId ?? null,
                  recipient: event.recipient ?? null,
                  serviceId: request.service_id,
                  accountId: accountOf(accounts, request.service_id),
                  occurredAt: event.occurredAt,
                },
              })),
        );
        // Matched before they are stored, so that they are stored matched: the sub-tasks are
        // locked here, and only the events the INSERT finds new are applied.
        // Not isolated: a strategy that fails sends the batch down the careful path, where each
        // strategy is isolated in a savepoint of its own.
        const matches = await this.correlate(tx, events, false);
        const subTasks = await this.lockSubTasks(tx, matches);
        // An event whose sub-task awaits its send is stored pending: it waits, as matchDue has it.
        for (const [key, match] of matches)
          if (AWAITING_SEND.has(subTasks.get(match.subTaskId)?.status ?? '')) matches.delete(key);
        const fresh = await this.storeParsed(tx, parsed, accounts, matches);
        const matched = fresh.flatMap((event) => {
          const match = matches.get(event.dedupe_key);
          return match ? [{ event, match }] : [];
        });
        await this.settleMatched(tx, matched, subTasks);
        // A request without events (refused, a confirmation) was still parsed.
        return { taken: stored.length, eventCount: Math.max(events.length, stored.length), matched };
      });
      this.countMatched(matched);
      return { requests: taken, events: eventCount };
    } catch (error) {
      this.logger.event('warn', 'stored webhooks not processed as a batch; parsing them one by one', {
        error: String(error),
      });
      this.matchDueAt = 0;
      const requests = await this.dataSource.transaction((tx) => this.parseStored(tx));
      return { requests, events: requests };
    }
  }

  private async claimStored(tx: EntityManager): Promise<StoredRequest[]> {
    return (await queryNamed<StoredRequest>(tx, CLAIM_STORED, [BATCH])).rows;
  }

  /** The careful path: one request the database refuses is marked invalid, the others go on. */
  private async parseStored(tx: EntityManager): Promise<number> {
    const stored = await this.claimStored(tx);
    if (stored.length === 0) return 0;
    const parsed = stored.map((request) => this.parse(request));
    const accounts = await this.accountsOf(tx, stored);
    await tx.query('SAVEPOINT parse_batch');
    try {
      await this.storeParsed(tx, parsed, accounts);
      await tx.query('RELEASE SAVEPOINT parse_batch');
    } catch {
      // One request the database refuses must not hold back the others: one at a time, and the
      // one refused is marked invalid with the reason (its raw body stays stored).
      await tx.query('ROLLBACK TO SAVEPOINT parse_batch');
      for (const one of parsed) {
        await tx.query('SAVEPOINT parse_one');
        try {
          await this.storeParsed(tx, [one], accounts);
          await tx.query('RELEASE SAVEPOINT parse_one');
        } catch (oneError) {
          await tx.query('ROLLBACK TO SAVEPOINT parse_one');
          this.logger.event('warn', 'stored webhook could not be parsed into events', {
            eventLogId: one.request.id,
            error: String(oneError),
          });
          await this.storeParsed(
            tx,
            [
              {
                request: one.request,
                result: { kind: 'invalid', reason: `not storable: ${String(oneError)}` },
              },
            ],
            accounts,
          );
        }
      }
    }
    return stored.length;
  }

  private parse(request: StoredRequest): ParsedRequest {
    try {
      if (request.source === 'tracking') return { request, result: parseTrackingHit(request.raw_body) };
      if (isWebhookProvider(request.source))
        return { request, result: parseWebhook(request.source, request.raw_body, request.headers) };
      return { request, result: { kind: 'invalid', reason: `unknown source ${request.source}` } };
    } catch (error) {
      // A parser bug must not hold the request back forever: it is kept, marked with the error.
      return { request, result: { kind: 'invalid', reason: `parser failed: ${String(error)}` } };
    }
  }

  /**
   * The account of each service the requests name. A service never changes account, so what
   * was read once is kept (up to SERVICE_ACCOUNTS_KEPT services).
   */
  private async accountsOf(
    tx: EntityManager,
    stored: readonly StoredRequest[],
  ): Promise<Map<string, string>> {
    const wanted = [...new Set(stored.map((r) => r.service_id).filter((id): id is string => id !== null))];
    const missing = wanted.filter((id) => !this.serviceAccounts.has(id));
    if (missing.length) {
      const rows: { id: string; account_id: string }[] = await tx.query(
        `SELECT id, account_id FROM sending_services WHERE id = ANY ($1::uuid[])`,
        [missing],
      );
      if (this.serviceAccounts.size + rows.length > SERVICE_ACCOUNTS_KEPT) this.serviceAccounts.clear();
      for (const row of rows) this.serviceAccounts.set(row.id, row.account_id);
    }
    return new Map(
      wanted.flatMap((id) => (this.serviceAccounts.has(id) ? [[id, this.serviceAccounts.get(id)!]] : [])),
    );
  }

  /**
   * The provider events of a batch of requests in one INSERT (one seen before, by id or body, is
   * dropped by the unique dedupe key; one in `matches`, by its dedupe key, is stored matched),
   * and every request's outcome, in one statement. With `matches` (the strategies were tried),
   * an event not in it is stored pending and backed off as after a first attempt; without, it is
   * stored pending and due at once. Returns the events that are new, as stored.
   */
  private async storeParsed(
    tx: EntityManager,
    parsed: readonly ParsedRequest[],
    accounts: ReadonlyMap<string, string>,
    matches?: ReadonlyMap<string, Correlation>,
  ): Promise<StoredMailEvent[]> {
    const rows = parsed.flatMap(({ request, result }) =>
      result.kind === 'events'
        ? result.events.map((event) => ({ request, event, match: matches?.get(event.dedupeKey) }))
        : [],
    );
    const { rows: fresh } = await queryNamed<StoredMailEvent>(tx, STORE_PARSED, [
      parsed.map(({ request }) => request.id),
      parsed.map(({ result }) => (result.kind === 'invalid' ? 'invalid' : 'processed')),
      parsed.map(({ result }) =>
        result.kind === 'invalid'
          ? result.reason
          : result.kind === 'events'
            ? null
            : `SNS ${result.messageType}`,
      ),
      parsed.map(({ result }) => (result.kind === 'events' ? result.events.length : 0)),
      rows.map(() => uuidv7()),
      rows.map(({ request }) => request.id),
      rows.map(({ request }) => request.source),
      rows.map(({ request }) => request.service_id),
      rows.map(({ request }) => accountOf(accounts, request.service_id)),
      rows.map(({ event }) => event.dedupeKey),
      rows.map(({ event }) => event.type),
      rows.map(({ event }) => event.rawType.slice(0, 200)),
      rows.map(({ event }) => (Number.isNaN(event.occurredAt.getTime()) ? new Date() : event.occurredAt)),
      rows.map(({ event }) => event.recipient ?? null),
      rows.map(({ event }) => JSON.stringify(messageIdsOf(event))),
      rows.map(({ event }) => event.trackingId ?? null),
      rows.map(({ event }) => event.taskId ?? null),
      rows.map(({ event }) => event.headerMessageId ?? null),
      rows.map(({ event }) => event.url ?? null),
      rows.map(({ event }) => event.reason ?? null),
      rows.map(({ event }) => event.suppression),
      rows.map(({ match }) => match?.strategy ?? null),
      rows.map(({ match }) => match?.subTaskId ?? null),
      rows.map(({ match }) => match?.taskId ?? null),
      matches ? 1 : 0,
      matches ? retryDelayMs(0) : 0,
    ]);
    const duplicates = new Map<string, number>();
    for (const { request } of rows) duplicates.set(request.source, (duplicates.get(request.source) ?? 0) + 1);
    for (const { provider } of fresh) duplicates.set(provider, duplicates.get(provider)! - 1);
    for (const [provider, n] of duplicates)
      if (n > 0) this.events.inc({ provider, type: 'any', match: 'duplicate' }, n);
    return fresh;
  }

  private async matchDue(tx: EntityManager): Promise<number> {
    // statement_timestamp(), not clock_timestamp(): a stable bound ends the index scan at the
    // first event not yet due, where a volatile one is a filter run over every pending event.
    const due: PendingMailEvent[] = await tx.query(
      `SELECT ${PENDING_COLUMNS} FROM mail_events WHERE match_status = 'pending' AND next_match_at <= statement_timestamp()
        ORDER BY next_match_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
      [BATCH],
    );
    if (due.length === 0) return 0;
    await tx.query('SAVEPOINT match_batch');
    try {
      const outcome = await this.settleDue(tx, due);
      await tx.query('RELEASE SAVEPOINT match_batch');
      this.countSettled(outcome);
      return due.length;
    } catch (error) {
      await tx.query('ROLLBACK TO SAVEPOINT match_batch');
      this.logger.event('warn', 'batch matching failed; matching event by event', { error: String(error) });
    }
    // The careful path: one event that cannot be applied is backed off, the others go on.
    for (const event of due) {
      await tx.query('SAVEPOINT mail_event');
      try {
        const outcome = await this.settleDue(tx, [event]);
        await tx.query('RELEASE SAVEPOINT mail_event');
        this.countSettled(outcome);
      } catch (error) {
        await tx.query('ROLLBACK TO SAVEPOINT mail_event');
        this.logger.event('warn', 'mail event not applied; will retry', {
          mailEventId: event.id,
          error: String(error),
        });
        await this.retryLater(tx, [event]);
      }
    }
    return due.length;
  }

  /**
   * Whether a matched event waits for its sub-task's send to be recorded (backed off, and made
   * due at once by the SubTaskBatchSent): while the sub-task awaits its send, for at most the
   * unmatched events' age. Past it, the event is settled as matched and changes nothing.
   */
  private waitsForSend(event: PendingMailEvent, status: string | undefined): boolean {
    return (
      AWAITING_SEND.has(status ?? '') &&
      Date.now() - event.received_at.getTime() < this.config.INGEST_UNMATCHED_MAX_AGE_MS
    );
  }

  /** Counted once their transaction committed. */
  private countMatched(matched: readonly Matched[]): void {
    for (const { event, match } of matched)
      this.events.inc({ provider: event.provider, type: event.type ?? 'other', match: match.strategy });
  }

  /**
   * The five strategies for a batch of events. Isolated, a strategy that fails is counted and
   * logged and the next one runs; else a failure fails the transaction (the common path, whose
   * fallback stores the events pending and matches them here, isolated).
   */
  private correlate(
    tx: EntityManager,
    events: readonly { key: string; clues: MailEventClues }[],
    isolated: boolean,
  ): Promise<Map<string, Correlation>> {
    return correlateAll(
      tx,
      events,
      this.config.INGEST_MATCH_WINDOW_MS,
      isolated
        ? (strategy, error, keys) => {
            this.strategyErrors.inc({ strategy }, keys.length);
            this.logger.event('warn', 'correlation strategy failed', {
              strategy,
              events: keys.length,
              keys: keys.slice(0, 10),
              error: String(error),
            });
          }
        : undefined,
    );
  }

  /** The matched sub-tasks, locked once (in id order) and handed on: applying needs no second look. */
  private async lockSubTasks(
    tx: EntityManager,
    matches: ReadonlyMap<string, Correlation>,
  ): Promise<Map<string, SubTaskState>> {
    const ids = [...new Set([...matches.values()].map((match) => match.subTaskId))];
    if (ids.length === 0) return new Map();
    const { rows } = await queryNamed<SubTaskState>(tx, LOCK_SUB_TASKS, [ids]);
    return new Map(rows.map((row) => [row.id, row]));
  }

  /** After their transaction's savepoint: what `settleDue` matched and gave up on. */
  private countSettled({ matched, unmatched }: { matched: Matched[]; unmatched: PendingMailEvent[] }): void {
    this.countMatched(matched);
    for (const event of unmatched)
      this.events.inc({ provider: event.provider, type: event.type ?? 'other', match: 'unmatched' });
  }

  /**
   * Events due (again), in bulk: the five strategies for all of them (one statement each), the
   * matched sub-tasks locked once, in id order, and the events applied and recorded together; the
   * others backed off or, past the bounded age, recorded as unmatched. The careful path calls it
   * with one event at a time.
   */
  private async settleDue(
    tx: EntityManager,
    events: readonly PendingMailEvent[],
  ): Promise<{ matched: Matched[]; unmatched: PendingMailEvent[] }> {
    const matches = await this.correlate(
      tx,
      events.map((event) => ({ key: event.id, clues: cluesOf(event) })),
      true,
    );
    const subTasks = await this.lockSubTasks(tx, matches);
    const matched: Matched[] = [];
    const later: PendingMailEvent[] = [];
    const unmatched: PendingMailEvent[] = [];
    for (const event of events) {
      const match = matches.get(event.id);
      if (match && !this.waitsForSend(event, subTasks.get(match.subTaskId)?.status))
        matched.push({ event, match });
      else if (match || Date.now() - event.received_at.getTime() < this.config.INGEST_UNMATCHED_MAX_AGE_MS)
        later.push(event);
      else unmatched.push(event);
    }
    await this.retryLater(tx, later);
    await this.markMatched(tx, matched);
    await this.settleMatched(tx, matched, subTasks);
    if (unmatched.length) {
      await tx.query(
        `UPDATE mail_events SET match_status = 'unmatched', match_attempts = match_attempts + 1
          WHERE id = ANY ($1::uuid[])`,
        [unmatched.map((event) => event.id)],
      );
      await this.store.append(
        tx,
        this.recorded(unmatched.map((event) => ({ event, match: null }))),
        this.meta(unmatched[0].event_log_id),
      );
    }
    return { matched, unmatched };
  }

  /** Applies matched events to their sub-tasks and records each as an event. */
  private async settleMatched(
    tx: EntityManager,
    matched: readonly Matched[],
    locked?: ReadonlyMap<string, SubTaskState>,
  ): Promise<void> {
    if (matched.length === 0) return;
    await applyMailEvents(
      tx,
      this.store,
      matched
        .filter(({ event }) => event.type && isMailEventType(event.type))
        .map(({ event, match }) => ({
          subTaskId: match.subTaskId,
          event: {
            mailEventId: event.id,
            eventLogId: event.event_log_id,
            type: event.type as MailEventType,
            occurredAt: event.occurred_at,
            suppression: event.suppression,
            reason: event.reason,
          },
          meta: this.meta(event.event_log_id),
        })),
      {
        softBounceLimit: this.config.INGEST_SOFT_BOUNCE_LIMIT,
        also: this.recorded(matched),
        locked,
      },
    );
  }

  /** Stored events found their sub-task: marked so, with the strategy that found it. */
  private async markMatched(tx: EntityManager, matched: readonly Matched[]): Promise<void> {
    if (matched.length === 0) return;
    await tx.query(
      `UPDATE mail_events m SET match_status = 'matched', match_strategy = u.strategy, sub_task_id = u.sub_task_id,
              matched_task_id = u.task_id, match_attempts = m.match_attempts + 1
         FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[]) AS u(id, strategy, sub_task_id, task_id)
        WHERE m.id = u.id`,
      [
        matched.map(({ event }) => event.id),
        matched.map(({ match }) => match.strategy),
        matched.map(({ match }) => match.subTaskId),
        matched.map(({ match }) => match.taskId),
      ],
    );
  }

  /** Unmatched for now: the send may not be recorded yet. Backed off (`retryDelayMs`). */
  private async retryLater(tx: EntityManager, events: readonly PendingMailEvent[]): Promise<void> {
    if (events.length === 0) return;
    await tx.query(
      `UPDATE mail_events m SET match_attempts = m.match_attempts + 1,
              next_match_at = clock_timestamp() + make_interval(secs => u.delay_ms / 1000)
         FROM unnest($1::uuid[], $2::float8[]) AS u(id, delay_ms)
        WHERE m.id = u.id`,
      [events.map((event) => event.id), events.map((event) => retryDelayMs(event.match_attempts))],
    );
  }

  /**
   * The MailEventsRecorded appends of settled events, matched (with their sub-task) or unmatched:
   * one per provider event type, split where the events it lists would pass
   * BATCH_EVENT_MAX_BYTES (a batch of SendGrid requests holds thousands), each in a stream of its
   * own, with the metadata of its first event's request (every event names its own request).
   */
  private recorded(
    settled: readonly { event: PendingMailEvent; match: Correlation | null }[],
  ): StreamAppend[] {
    const byType = new Map<string | null, EventData<'MailEventsRecorded'>['events']>();
    for (const { event, match } of settled) {
      let records = byType.get(event.type);
      if (!records) byType.set(event.type, (records = []));
      records.push({
        mailEventId: event.id,
        eventLogId: event.event_log_id,
        provider: event.provider,
        // The service whose mail it is: the matched sub-task's sender, whichever endpoint the
        // callback came to (two services on one provider account may share a webhook URL, and the
        // generic endpoint takes the first service whose secret verifies); unmatched, the
        // endpoint's. The monitor's webhook-silence rule answers each service's sends with these.
        serviceId: match?.serviceId ?? event.service_id ?? null,
        rawType: event.raw_type,
        matchStatus: match ? 'matched' : 'unmatched',
        matchStrategy: match?.strategy ?? null,
        subTaskId: match?.subTaskId ?? null,
        taskId: match?.taskId ?? null,
        occurredAt: event.occurred_at.toISOString(),
      });
    }
    return [...byType].flatMap(([type, records]) =>
      inPayloadParts(records, (record) => Buffer.byteLength(JSON.stringify(record))).map((events) => ({
        streamId: `mail-events-${uuidv7()}`,
        expectedVersion: 'no_stream' as const,
        metadata: this.meta(events[0].eventLogId),
        events: [newEvent('MailEventsRecorded', { type, events })],
      })),
    );
  }

  private meta(eventLogId: string): EventMetadata {
    return { correlationId: eventLogId, causationId: null, actor: 'webhook-ingest' };
  }
}
