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

/**
 * Delivers queued alert notifications to MONITOR_ALERT_WEBHOOK_URL, retrying failures with
 * backoff (1 s doubling to 5 min). Rows are claimed with SKIP LOCKED, so replicas share the work.
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
      await this.dataSource.transaction(async (tx) => {
        const due: { id: string; body: unknown; attempts: number }[] = await tx.query(
          `SELECT id, body, attempts FROM alert_notifications WHERE delivered_at IS NULL AND next_attempt_at <= clock_timestamp()
            ORDER BY created_at LIMIT 20 FOR UPDATE SKIP LOCKED`,
        );
        for (const n of due) {
          const error = await fetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(n.body),
            signal: AbortSignal.timeout(5_000),
          }).then(
            (r) => (r.ok ? null : `HTTP ${r.status}`),
            (e: unknown) => String(e),
          );
          if (error === null) {
            await tx.query(
              `UPDATE alert_notifications SET delivered_at = clock_timestamp(), attempts = attempts + 1 WHERE id = $1`,
              [n.id],
            );
          } else {
            const delay = Math.min(300_000, 1_000 * 2 ** n.attempts);
            await tx.query(
              `UPDATE alert_notifications SET attempts = attempts + 1, last_error = $2, next_attempt_at = clock_timestamp() + make_interval(secs => $3::float8 / 1000)
                WHERE id = $1`,
              [n.id, error, delay],
            );
            this.logger.event('warn', 'alert notification failed; will retry', {
              notification: n.id,
              error,
              retryInMs: delay,
            });
          }
        }
      });
    } catch (error) {
      this.logger.event('error', 'alert delivery failed', { error: String(error) });
    } finally {
      this.busy = false;
    }
  }
}
