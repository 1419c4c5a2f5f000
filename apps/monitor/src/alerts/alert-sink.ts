import { BeforeApplicationShutdown, Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { APP_CONFIG, AppConfig } from '@edm/config';
import { JsonLogger } from '@edm/observability';
import { AlertCondition } from './alert-rules';

const COLOURS = { critical: '#d50200', warning: '#de9e31', info: '#2eb886' } as const;

/** A body Slack's incoming webhooks accept (text plus one attachment), readable by anything else. */
export function alertMessageBody(what: 'raised' | 'resolved' | 'repeat', condition: AlertCondition) {
  const title = `${what === 'resolved' ? 'Resolved' : what === 'repeat' ? 'Still firing' : 'Alert'}: ${condition.kind} (${condition.subject})`;
  return {
    text: `${title}\n${condition.message}`,
    attachments: [
      {
        color: COLOURS[what === 'resolved' ? 'info' : condition.severity],
        title,
        text: condition.message,
        fields: [
          { title: 'kind', value: condition.kind, short: true },
          { title: 'subject', value: condition.subject, short: true },
          { title: 'severity', value: condition.severity, short: true },
        ],
      },
    ],
  };
}

const BATCH = 20;
const CALL_TIMEOUT_MS = 5_000;
/**
 * How long a claimed batch is kept from other replicas: longer than its calls can take, one after
 * another, so a live holder records every outcome first; a dead holder's batch is retried after it.
 */
const CLAIM_MS = BATCH * CALL_TIMEOUT_MS + 20_000;

/**
 * Claims due notifications by moving them past the claim, so the webhook is called with no
 * transaction open: a transaction held through slow calls would hold back pg_snapshot_xmin, and
 * with it every event the outbox relay may publish. Only the oldest undelivered notification of
 * an alert, or of any alert of the same kind and subject, is due: a resolution never overtakes
 * its alert, nor a new alert the resolution before it, whatever their backoffs.
 */
const CLAIM = `
  WITH claimed AS (
    UPDATE alert_notifications SET next_attempt_at = clock_timestamp() + make_interval(secs => $1::float8 / 1000)
     WHERE id IN (
       SELECT n.id FROM alert_notifications n LEFT JOIN alerts a ON a.id = n.alert_id
        WHERE n.delivered_at IS NULL AND n.next_attempt_at <= clock_timestamp()
          AND NOT EXISTS (
            SELECT 1 FROM alert_notifications e LEFT JOIN alerts ea ON ea.id = e.alert_id
             WHERE e.delivered_at IS NULL AND (e.created_at, e.id) < (n.created_at, n.id)
               AND (e.alert_id = n.alert_id OR (ea.kind = a.kind AND ea.subject = a.subject)))
        ORDER BY n.created_at LIMIT $2 FOR UPDATE OF n SKIP LOCKED)
     RETURNING id, body, attempts, created_at, next_attempt_at::text AS claim)
  SELECT id, body, attempts, claim FROM claimed ORDER BY created_at, id`;

/**
 * Delivers queued alert notifications to MONITOR_ALERT_WEBHOOK_URL, at least once, retrying
 * failures with backoff (1 s doubling to 5 min). Rows are claimed with SKIP LOCKED and a claim
 * that expires, so replicas share the work and a replica that dies mid-batch delays it only.
 */
@Injectable()
export class AlertSink implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private timer?: NodeJS.Timeout;
  private busy = false;

  constructor(
    private readonly dataSource: DataSource,
    private readonly logger: JsonLogger,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap(): void {
    if (this.config.MONITOR_ALERT_WEBHOOK_URL) this.timer = setInterval(() => void this.deliverDue(), 500);
  }

  beforeApplicationShutdown(): void {
    clearInterval(this.timer);
  }

  async deliverDue(): Promise<void> {
    const url = this.config.MONITOR_ALERT_WEBHOOK_URL;
    if (this.busy || !url) return;
    this.busy = true;
    try {
      const claimed: { id: string; body: unknown; attempts: number; claim: string }[] =
        await this.dataSource.query(CLAIM, [CLAIM_MS, BATCH]);
      // Oldest first, one call at a time: chat webhooks limit the rate (Slack's to about one a second).
      for (const n of claimed) {
        const error = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(n.body),
          signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
        }).then(
          (r) => (r.ok ? null : `HTTP ${r.status}`),
          (e: unknown) => String(e),
        );
        await this.record(n, error);
      }
    } catch (error) {
      this.logger.event('error', 'alert delivery failed', { error: String(error) });
    } finally {
      this.busy = false;
    }
  }

  /**
   * A delivery is recorded whoever holds the claim now. A failure is recorded only while the claim
   * is still this one (next_attempt_at unchanged): after it expired, another replica may have
   * claimed the notification again, and its outcome is the one that counts.
   */
  private async record(n: { id: string; attempts: number; claim: string }, error: string | null) {
    if (error === null) {
      await this.dataSource.query(
        `UPDATE alert_notifications SET delivered_at = clock_timestamp(), attempts = attempts + 1
          WHERE id = $1 AND delivered_at IS NULL`,
        [n.id],
      );
      return;
    }
    const delay = Math.min(300_000, 1_000 * 2 ** n.attempts);
    await this.dataSource.query(
      `UPDATE alert_notifications SET attempts = attempts + 1, last_error = $2, next_attempt_at = clock_timestamp() + make_interval(secs => $3::float8 / 1000)
        WHERE id = $1 AND delivered_at IS NULL AND next_attempt_at = $4::timestamptz`,
      [n.id, error, delay, n.claim],
    );
    this.logger.event('warn', 'alert notification failed; will retry', {
      notification: n.id,
      error,
      retryInMs: delay,
    });
  }
}
