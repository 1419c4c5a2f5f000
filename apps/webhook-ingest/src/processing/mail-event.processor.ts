import { BeforeApplicationShutdown, Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { APP_CONFIG, AppConfig } from '@edm/config';
import { isMailEventType, MailEventType } from '@edm/domain';
import { EventMetadata, newEvent } from '@edm/events';
import { EventStore, StreamAppend, uuidv7 } from '@edm/event-store';
import { JsonLogger, Metrics } from '@edm/observability';
import { EventBusSubscriber } from '@edm/platform';
import { isWebhookProvider, ParseWebhookResult, parseWebhook } from '@edm/providers';
import { RawIntakeWriter } from '../intake/raw-intake.writer';
import { parseTrackingHit } from '../tracking/tracking-hit';
import { applyMailEvents } from './apply-mail-event';
import { correlate, correlateByTrackingId, Correlation } from './correlate-mail-event';

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

/** Rows a worker claims at once: small, so that concurrent workers share a burst. */
const BATCH = 50;

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
  private readonly events;
  private readonly strategyErrors;

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
  }

  onApplicationBootstrap(): void {
    this.writer.onStored(() => this.wake());
    this.bus.addListener((event) => {
      if (event.type === 'SubTaskSent') this.wake();
    });
    this.running = true;
    // Several workers: each event is a chain of round trips, so one loop leaves the database
    // idle; rows are claimed with SKIP LOCKED, so workers never take the same one.
    this.loops = Array.from({ length: this.config.INGEST_WORKERS }, () => this.run());
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.running = false;
    this.wake();
    await Promise.all(this.loops);
  }

  wake(): void {
    for (const wake of this.sleepers) wake();
  }

  /** One pass: parse what was stored, then match what is due. Returns whether it did anything. */
  async drain(): Promise<number> {
    const parsed = await this.dataSource.transaction((tx) => this.parseStored(tx));
    const matched = await this.dataSource.transaction((tx) => this.matchDue(tx));
    return parsed + matched;
  }

  private async run(): Promise<void> {
    while (this.running) {
      let worked = 0;
      try {
        worked = await this.drain();
      } catch (error) {
        this.logger.event('error', 'webhook processing failed; will retry', { error: String(error) });
      }
      if (!worked && this.running) {
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
  }

  private async parseStored(tx: EntityManager): Promise<number> {
    const stored: StoredRequest[] = await tx.query(
      `SELECT id, source, service_id, raw_body, headers FROM event_logs WHERE status = 'received'
        ORDER BY received_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
      [BATCH],
    );
    if (stored.length === 0) return 0;
    const parsed = stored.map((request) => ({ request, result: this.parse(request) }));
    await tx.query('SAVEPOINT parse_batch');
    try {
      await this.storeParsed(tx, parsed);
      await tx.query('RELEASE SAVEPOINT parse_batch');
    } catch {
      // One request the database refuses must not hold back the others: one at a time, and the
      // one refused is marked invalid with the reason (its raw body stays stored).
      await tx.query('ROLLBACK TO SAVEPOINT parse_batch');
      for (const one of parsed) {
        await tx.query('SAVEPOINT parse_one');
        try {
          await this.storeParsed(tx, [one]);
          await tx.query('RELEASE SAVEPOINT parse_one');
        } catch (oneError) {
          await tx.query('ROLLBACK TO SAVEPOINT parse_one');
          this.logger.event('warn', 'stored webhook could not be parsed into events', {
            eventLogId: one.request.id,
            error: String(oneError),
          });
          await this.storeParsed(tx, [
            {
              request: one.request,
              result: { kind: 'invalid', reason: `not storable: ${String(oneError)}` },
            },
          ]);
        }
      }
    }
    return stored.length;
  }

  private parse(request: StoredRequest): ParseWebhookResult {
    if (request.source === 'tracking') return parseTrackingHit(request.raw_body);
    if (isWebhookProvider(request.source))
      return parseWebhook(request.source, request.raw_body, request.headers);
    return { kind: 'invalid', reason: `unknown source ${request.source}` };
  }

  /**
   * The provider events of a batch of requests in one INSERT (one seen before, by id or body, is
   * dropped by the unique dedupe key), and every request's outcome in one UPDATE.
   */
  private async storeParsed(
    tx: EntityManager,
    parsed: readonly { request: StoredRequest; result: ParseWebhookResult }[],
  ): Promise<void> {
    const serviceIds = [
      ...new Set(parsed.map((p) => p.request.service_id).filter((id): id is string => id !== null)),
    ];
    const accounts = new Map<string, string>(
      serviceIds.length === 0
        ? []
        : (
            await tx.query(`SELECT id, account_id FROM sending_services WHERE id = ANY ($1::uuid[])`, [
              serviceIds,
            ])
          ).map((r: { id: string; account_id: string }) => [r.id, r.account_id]),
    );
    const rows = parsed.flatMap(({ request, result }) =>
      result.kind === 'events' ? result.events.map((event) => ({ request, event })) : [],
    );
    if (rows.length > 0) {
      const inserted: { provider: string }[] = await tx.query(
        `INSERT INTO mail_events (id, event_log_id, provider, service_id, account_id, dedupe_key, type, raw_type, occurred_at, recipient,
                                  provider_message_ids, tracking_id, task_id, header_message_id, url, reason, suppression)
         SELECT u.id, u.event_log_id, u.provider, u.service_id, u.account_id, u.dedupe_key, u.type, u.raw_type, u.occurred_at, u.recipient,
                ARRAY(SELECT jsonb_array_elements_text(u.ids::jsonb)), u.tracking_id, u.task_id, u.header_message_id, u.url, u.reason, u.suppression
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[], $6::text[], $7::text[], $8::text[], $9::timestamptz[],
                       $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::boolean[])
                AS u(id, event_log_id, provider, service_id, account_id, dedupe_key, type, raw_type, occurred_at, recipient, ids,
                     tracking_id, task_id, header_message_id, url, reason, suppression)
         ON CONFLICT (dedupe_key) DO NOTHING
         RETURNING provider`,
        [
          rows.map(() => uuidv7()),
          rows.map(({ request }) => request.id),
          rows.map(({ request }) => request.source),
          rows.map(({ request }) => request.service_id),
          rows.map(({ request }) => (request.service_id ? (accounts.get(request.service_id) ?? null) : null)),
          rows.map(({ event }) => event.dedupeKey),
          rows.map(({ event }) => event.type),
          rows.map(({ event }) => event.rawType.slice(0, 200)),
          rows.map(({ event }) => (Number.isNaN(event.occurredAt.getTime()) ? new Date() : event.occurredAt)),
          rows.map(({ event }) => event.recipient ?? null),
          rows.map(({ event }) =>
            JSON.stringify([
              ...new Set(
                [event.providerMessageId, ...event.messageIdCandidates].filter((x): x is string => !!x),
              ),
            ]),
          ),
          rows.map(({ event }) => event.trackingId ?? null),
          rows.map(({ event }) => event.taskId ?? null),
          rows.map(({ event }) => event.headerMessageId ?? null),
          rows.map(({ event }) => event.url ?? null),
          rows.map(({ event }) => event.reason ?? null),
          rows.map(({ event }) => event.suppression),
        ],
      );
      const duplicates = new Map<string, number>();
      for (const { request } of rows)
        duplicates.set(request.source, (duplicates.get(request.source) ?? 0) + 1);
      for (const { provider } of inserted) duplicates.set(provider, duplicates.get(provider)! - 1);
      for (const [provider, n] of duplicates)
        if (n > 0) this.events.inc({ provider, type: 'any', match: 'duplicate' }, n);
    }
    await tx.query(
      `UPDATE event_logs e SET status = u.status, parse_error = u.note, events = u.events, processed_at = clock_timestamp()
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[]) AS u(id, status, note, events)
        WHERE e.id = u.id`,
      [
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
      ],
    );
  }

  private async matchDue(tx: EntityManager): Promise<number> {
    const due: PendingMailEvent[] = await tx.query(
      `SELECT * FROM mail_events WHERE match_status = 'pending' AND next_match_at <= clock_timestamp()
        ORDER BY next_match_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
      [BATCH],
    );
    const settled = await this.matchByTrackingId(tx, due);
    for (const event of due) {
      if (settled.has(event.id)) continue;
      await tx.query('SAVEPOINT mail_event');
      try {
        await this.matchOne(tx, event);
        await tx.query('RELEASE SAVEPOINT mail_event');
      } catch (error) {
        await tx.query('ROLLBACK TO SAVEPOINT mail_event');
        this.logger.event('warn', 'mail event not applied; will retry', {
          mailEventId: event.id,
          error: String(error),
        });
        await this.retryLater(tx, event);
      }
    }
    return due.length;
  }

  /**
   * The common case in bulk: events carrying our tracking id (the first strategy) are matched,
   * applied and recorded for the whole batch in a few statements. Anything this path cannot
   * settle, or a batch it fails on, goes through `matchOne`, event by event.
   */
  private async matchByTrackingId(tx: EntityManager, due: PendingMailEvent[]): Promise<Set<string>> {
    const candidates = due.filter((e) => e.tracking_id);
    if (candidates.length === 0) return new Set();
    await tx.query('SAVEPOINT tracking_id_batch');
    try {
      const matches = await correlateByTrackingId(
        tx,
        candidates.map((e) => ({ key: e.id, trackingId: e.tracking_id!, accountId: e.account_id })),
      );
      const matched = candidates.flatMap((event) => {
        const match = matches.get(event.id);
        return match ? [{ event, match }] : [];
      });
      await this.settleMatched(tx, matched);
      await tx.query('RELEASE SAVEPOINT tracking_id_batch');
      for (const { event } of matched)
        this.events.inc({ provider: event.provider, type: event.type ?? 'other', match: 'tracking-id' });
      return new Set(matched.map(({ event }) => event.id));
    } catch (error) {
      await tx.query('ROLLBACK TO SAVEPOINT tracking_id_batch');
      this.logger.event('warn', 'batch matching failed; matching event by event', { error: String(error) });
      return new Set();
    }
  }

  private async matchOne(tx: EntityManager, event: PendingMailEvent): Promise<void> {
    const match = await correlate(
      tx,
      {
        trackingId: event.tracking_id,
        providerMessageIds: event.provider_message_ids,
        headerMessageId: event.header_message_id,
        taskId: event.task_id,
        recipient: event.recipient,
        serviceId: event.service_id,
        accountId: event.account_id,
        occurredAt: event.occurred_at,
      },
      this.config.INGEST_MATCH_WINDOW_MS,
      (strategy, error) => {
        this.strategyErrors.inc({ strategy });
        this.logger.event('warn', 'correlation strategy failed', {
          strategy,
          mailEventId: event.id,
          error: String(error),
        });
      },
    );
    if (!match) {
      const age = Date.now() - event.received_at.getTime();
      if (age < this.config.INGEST_UNMATCHED_MAX_AGE_MS) return this.retryLater(tx, event);
      await tx.query(
        `UPDATE mail_events SET match_status = 'unmatched', match_attempts = match_attempts + 1 WHERE id = $1`,
        [event.id],
      );
      this.events.inc({ provider: event.provider, type: event.type ?? 'other', match: 'unmatched' });
      await this.store.append(tx, [this.recorded(event, null)], this.meta(event.event_log_id));
      return;
    }
    await this.settleMatched(tx, [{ event, match }]);
    this.events.inc({ provider: event.provider, type: event.type ?? 'other', match: match.strategy });
  }

  /** Applies matched events to their sub-tasks, marks them matched, and records each as an event. */
  private async settleMatched(
    tx: EntityManager,
    matched: readonly { event: PendingMailEvent; match: Correlation }[],
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
      this.config.INGEST_SOFT_BOUNCE_LIMIT,
    );
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
    await this.store.append(
      tx,
      matched.map(({ event, match }) => this.recorded(event, match)),
      this.meta(matched[0].event.event_log_id),
    );
  }

  /** Unmatched for now: the send may not be recorded yet. Back off, up to five minutes. */
  private async retryLater(tx: EntityManager, event: PendingMailEvent): Promise<void> {
    const delayMs = Math.min(300_000, 1_000 * 2 ** Math.min(event.match_attempts, 9));
    await tx.query(
      `UPDATE mail_events SET match_attempts = match_attempts + 1, next_match_at = clock_timestamp() + make_interval(secs => $2::float8 / 1000)
        WHERE id = $1`,
      [event.id, delayMs],
    );
  }

  /** The MailEventRecorded append of one event: matched (with its sub-task) or unmatched. */
  private recorded(event: PendingMailEvent, match: Correlation | null): StreamAppend {
    return {
      streamId: `mail-event-${event.id}`,
      expectedVersion: 'no_stream',
      metadata: this.meta(event.event_log_id),
      events: [
        newEvent('MailEventRecorded', {
          mailEventId: event.id,
          eventLogId: event.event_log_id,
          provider: event.provider,
          // The generic endpoint names no service: the matched sub-task's sender answers for it.
          serviceId: event.service_id ?? match?.serviceId ?? null,
          type: event.type,
          rawType: event.raw_type,
          matchStatus: match ? 'matched' : 'unmatched',
          matchStrategy: match?.strategy ?? null,
          subTaskId: match?.subTaskId ?? null,
          taskId: match?.taskId ?? null,
          occurredAt: event.occurred_at.toISOString(),
        }),
      ],
    };
  }

  private meta(eventLogId: string): EventMetadata {
    return { correlationId: eventLogId, causationId: null, actor: 'webhook-ingest' };
  }
}
