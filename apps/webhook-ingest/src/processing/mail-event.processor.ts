import { BeforeApplicationShutdown, Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { APP_CONFIG, AppConfig } from '@edm/config';
import { isMailEventType } from '@edm/domain';
import { EventMetadata, newEvent } from '@edm/events';
import { EventStore, uuidv7 } from '@edm/event-store';
import { JsonLogger, Metrics } from '@edm/observability';
import { EventBusSubscriber } from '@edm/platform';
import { isWebhookProvider, ParsedMailEvent, parseWebhook } from '@edm/providers';
import { RawIntakeWriter } from '../intake/raw-intake.writer';
import { parseTrackingHit } from '../tracking/tracking-hit';
import { applyMailEvent } from './apply-mail-event';
import { correlate, Correlation } from './correlate-mail-event';

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
    for (const request of stored) {
      const result =
        request.source === 'tracking'
          ? parseTrackingHit(request.raw_body)
          : isWebhookProvider(request.source)
            ? parseWebhook(request.source, request.raw_body, request.headers)
            : { kind: 'invalid' as const, reason: `unknown source ${request.source}` };
      if (result.kind !== 'events') {
        const note = result.kind === 'invalid' ? result.reason : `SNS ${result.messageType}`;
        await tx.query(
          `UPDATE event_logs SET status = $2, parse_error = $3, events = 0, processed_at = clock_timestamp() WHERE id = $1`,
          [request.id, result.kind === 'invalid' ? 'invalid' : 'processed', note],
        );
        continue;
      }
      await this.insertMailEvents(tx, request, result.events);
      await tx.query(
        `UPDATE event_logs SET status = 'processed', events = $2, processed_at = clock_timestamp() WHERE id = $1`,
        [request.id, result.events.length],
      );
    }
    return stored.length;
  }

  /** A provider event seen before (same id, or same body) is dropped by the unique dedupe key. */
  private async insertMailEvents(
    tx: EntityManager,
    request: StoredRequest,
    events: ParsedMailEvent[],
  ): Promise<void> {
    if (events.length === 0) return;
    const [service] = request.service_id
      ? await tx.query(`SELECT account_id FROM sending_services WHERE id = $1`, [request.service_id])
      : [undefined];
    const inserted: { provider: string; type: string | null }[] = await tx.query(
      `INSERT INTO mail_events (id, event_log_id, provider, service_id, account_id, dedupe_key, type, raw_type, occurred_at, recipient,
                                provider_message_ids, tracking_id, task_id, header_message_id, url, reason, suppression)
       SELECT u.id, $2, $3, $4, $5, u.dedupe_key, u.type, u.raw_type, u.occurred_at, u.recipient,
              ARRAY(SELECT jsonb_array_elements_text(u.ids::jsonb)), u.tracking_id, u.task_id, u.header_message_id, u.url, u.reason, u.suppression
         FROM unnest($1::uuid[], $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::text[],
                     $14::text[], $15::text[], $16::text[], $17::boolean[])
              AS u(id, dedupe_key, type, raw_type, occurred_at, recipient, ids, tracking_id, task_id, header_message_id, url, reason, suppression)
       ON CONFLICT (dedupe_key) DO NOTHING
       RETURNING provider, type`,
      [
        events.map(() => uuidv7()),
        request.id,
        request.source,
        request.service_id,
        service?.account_id ?? null,
        events.map((e) => e.dedupeKey),
        events.map((e) => e.type),
        events.map((e) => e.rawType.slice(0, 200)),
        events.map((e) => (Number.isNaN(e.occurredAt.getTime()) ? new Date() : e.occurredAt)),
        events.map((e) => e.recipient ?? null),
        events.map((e) =>
          JSON.stringify([
            ...new Set([e.providerMessageId, ...e.messageIdCandidates].filter((x): x is string => !!x)),
          ]),
        ),
        events.map((e) => e.trackingId ?? null),
        events.map((e) => e.taskId ?? null),
        events.map((e) => e.headerMessageId ?? null),
        events.map((e) => e.url ?? null),
        events.map((e) => e.reason ?? null),
        events.map((e) => e.suppression),
      ],
    );
    const duplicates = events.length - inserted.length;
    if (duplicates)
      this.events.inc({ provider: request.source, type: 'any', match: 'duplicate' }, duplicates);
  }

  private async matchDue(tx: EntityManager): Promise<number> {
    const due: PendingMailEvent[] = await tx.query(
      `SELECT * FROM mail_events WHERE match_status = 'pending' AND next_match_at <= clock_timestamp()
        ORDER BY next_match_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
      [BATCH],
    );
    for (const event of due) {
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
    const meta = this.meta(event.event_log_id);
    if (!match) {
      const age = Date.now() - event.received_at.getTime();
      if (age < this.config.INGEST_UNMATCHED_MAX_AGE_MS) return this.retryLater(tx, event);
      await tx.query(
        `UPDATE mail_events SET match_status = 'unmatched', match_attempts = match_attempts + 1 WHERE id = $1`,
        [event.id],
      );
      this.events.inc({ provider: event.provider, type: event.type ?? 'other', match: 'unmatched' });
      await this.record(tx, event, 'unmatched', null, null, meta);
      return;
    }
    if (event.type && isMailEventType(event.type)) {
      await applyMailEvent(
        tx,
        this.store,
        match.subTaskId,
        {
          mailEventId: event.id,
          eventLogId: event.event_log_id,
          type: event.type,
          occurredAt: event.occurred_at,
          suppression: event.suppression,
          reason: event.reason,
        },
        this.config.INGEST_SOFT_BOUNCE_LIMIT,
        meta,
      );
    }
    await tx.query(
      `UPDATE mail_events SET match_status = 'matched', match_strategy = $2, sub_task_id = $3, matched_task_id = $4, match_attempts = match_attempts + 1
        WHERE id = $1`,
      [event.id, match.strategy, match.subTaskId, match.taskId],
    );
    this.events.inc({ provider: event.provider, type: event.type ?? 'other', match: match.strategy });
    await this.record(tx, event, 'matched', match.strategy, match, meta);
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

  private async record(
    tx: EntityManager,
    event: PendingMailEvent,
    matchStatus: 'matched' | 'unmatched',
    strategy: string | null,
    match: Correlation | null,
    meta: EventMetadata,
  ): Promise<void> {
    await this.store.append(
      tx,
      [
        {
          streamId: `mail-event-${event.id}`,
          expectedVersion: 'no_stream',
          events: [
            newEvent('MailEventRecorded', {
              mailEventId: event.id,
              eventLogId: event.event_log_id,
              provider: event.provider,
              // The generic endpoint names no service: the matched sub-task's sender answers for it.
              serviceId: event.service_id ?? match?.serviceId ?? null,
              type: event.type,
              rawType: event.raw_type,
              matchStatus,
              matchStrategy: strategy,
              subTaskId: match?.subTaskId ?? null,
              taskId: match?.taskId ?? null,
              occurredAt: event.occurred_at.toISOString(),
            }),
          ],
        },
      ],
      meta,
    );
  }

  private meta(eventLogId: string): EventMetadata {
    return { correlationId: eventLogId, causationId: null, actor: 'webhook-ingest' };
  }
}
