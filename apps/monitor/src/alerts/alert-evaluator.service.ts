import { BeforeApplicationShutdown, Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { APP_CONFIG, AppConfig } from '@edm/config';
import { EventMetadata, newEvent } from '@edm/events';
import { EventStore, uuidv7 } from '@edm/event-store';
import { JetStreamService } from '@edm/messaging';
import { JsonLogger, Metrics } from '@edm/observability';
import { BUS_SUBSCRIPTIONS } from '@edm/platform';
import { reclaimLeases } from '@edm/workflows';
import { AlertCondition, RULES, unknownKinds } from './alert-rules';
import { alertMessageBody } from './alert-sink';

const EVALUATION_LOCK = 7_414_004;
/** How long an evaluation waits for the bus to report its consumers' lag. */
const CONSUMER_LAG_TIMEOUT_MS = 2_000;

interface FiringAlert {
  id: string;
  kind: string;
  subject: string;
  severity: string;
  message: string;
  notified_at: Date | null;
}

/**
 * Evaluates every rule on a schedule, in one replica at a time (a transaction-level advisory
 * lock), and keeps the alerts in step: a condition without a firing alert raises one, a firing
 * alert whose condition cleared resolves. Raised, resolved and (after the cool-down) repeated
 * alerts are queued for the HTTP sink and written to the log.
 */
@Injectable()
export class AlertEvaluator implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  constructor(
    private readonly dataSource: DataSource,
    private readonly store: EventStore,
    private readonly jetstream: JetStreamService,
    private readonly logger: JsonLogger,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    metrics: Metrics,
  ) {
    const db = dataSource;
    metrics.gauge(
      'edm_sub_tasks',
      'Sub-tasks of sending or paused tasks, by status.',
      ['status'],
      async function () {
        this.reset();
        const rows: { status: string; n: number }[] = await db
          .query(
            `SELECT s.status, count(*)::int AS n FROM sub_tasks s JOIN tasks t ON t.id = s.task_id
            WHERE t.status IN ('sending', 'paused', 'scheduled') GROUP BY s.status`,
          )
          .catch(() => []);
        for (const r of rows) this.set({ status: r.status }, r.n);
      },
    );
    metrics.gauge('edm_alerts_firing', 'Alerts firing now, by kind.', ['kind'], async function () {
      this.reset();
      const rows: { kind: string; n: number }[] = await db
        .query(`SELECT kind, count(*)::int AS n FROM alerts WHERE status = 'firing' GROUP BY kind`)
        .catch(() => []);
      for (const r of rows) this.set({ kind: r.kind }, r.n);
    });
  }

  onApplicationBootstrap(): void {
    this.timer = setInterval(() => void this.tick(), this.config.MONITOR_INTERVAL_MS);
    void this.tick();
  }

  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  private async tick(): Promise<void> {
    if (this.running) return;
    this.running = this.evaluate()
      .then(() => undefined)
      .catch((error: unknown) =>
        this.logger.event('error', 'alert evaluation failed', { error: String(error) }),
      )
      .finally(() => (this.running = undefined));
    await this.running;
  }

  /** One evaluation; returns what changed (for tests and logs). */
  async evaluate(): Promise<{ raised: string[]; resolved: string[] } | null> {
    // Asked of the bus before the transaction: no Postgres transaction waits on NATS, and a bus
    // that is down costs the evaluation at most CONSUMER_LAG_TIMEOUT_MS, not a timeout per consumer.
    const consumerLag = await this.consumerLag();
    return this.dataSource.transaction(async (tx) => {
      const [{ locked }] = await tx.query('SELECT pg_try_advisory_xact_lock($1) AS locked', [
        EVALUATION_LOCK,
      ]);
      if (!locked) return null;
      const conditions: AlertCondition[] = [];
      for (const rule of RULES) conditions.push(...(await rule({ tx, config: this.config, consumerLag })));
      await this.repairStuck(tx, conditions);
      return this.reconcile(tx, conditions, unknownKinds({ consumerLag }));
    });
  }

  /** The stuck-lease rule acts as well as alerts: the leases are released, and the repair logged. */
  private async repairStuck(tx: EntityManager, conditions: AlertCondition[]): Promise<void> {
    for (const condition of conditions.filter((c) => c.kind === 'stuck-sub-tasks')) {
      const taskId = String(condition.details.taskId);
      const released = await reclaimLeases(
        tx,
        this.store,
        { heldLongerThanMs: this.config.MONITOR_STUCK_LEASE_MS, taskId },
        this.meta(),
        10_000,
      );
      condition.details.released = released;
      this.logger.event('warn', 'stuck leases released', { taskId, released });
    }
  }

  private async reconcile(tx: EntityManager, conditions: AlertCondition[], unknown: string[]) {
    const firing: FiringAlert[] = await tx.query(
      `SELECT a.id, a.kind, a.subject, a.severity, a.message,
              (SELECT max(n.created_at) FROM alert_notifications n WHERE n.alert_id = a.id) AS notified_at
         FROM alerts a WHERE a.status = 'firing' FOR UPDATE`,
    );
    const key = (kind: string, subject: string) => `${kind}\u0000${subject}`;
    const byKey = new Map(firing.map((a) => [key(a.kind, a.subject), a]));
    const current = new Set(conditions.map((c) => key(c.kind, c.subject)));
    const raised: string[] = [];
    const resolved: string[] = [];
    for (const condition of conditions) {
      const existing = byKey.get(key(condition.kind, condition.subject));
      if (existing) {
        if (
          existing.notified_at &&
          Date.now() - existing.notified_at.getTime() > this.config.MONITOR_NOTIFY_COOLDOWN_MS
        ) {
          await this.notify(tx, existing.id, 'repeat', condition);
        }
        continue;
      }
      const alertId = uuidv7();
      await this.store.append(
        tx,
        [
          {
            streamId: `alert-${alertId}`,
            expectedVersion: 'no_stream',
            events: [newEvent('AlertRaised', { alertId, ...condition })],
          },
        ],
        this.meta(),
      );
      await this.notify(tx, alertId, 'raised', condition);
      raised.push(`${condition.kind} ${condition.subject}`);
    }
    for (const alert of firing) {
      if (current.has(key(alert.kind, alert.subject)) || unknown.includes(alert.kind)) continue;
      await this.store.append(
        tx,
        [
          {
            streamId: `alert-${alert.id}`,
            expectedVersion: 'any',
            events: [
              newEvent('AlertResolved', { alertId: alert.id, kind: alert.kind, subject: alert.subject }),
            ],
          },
        ],
        this.meta(),
      );
      await this.notify(tx, alert.id, 'resolved', {
        kind: alert.kind,
        subject: alert.subject,
        severity: 'info',
        message: `resolved: ${alert.message}`,
        details: {},
        accountId: null,
      });
      resolved.push(`${alert.kind} ${alert.subject}`);
    }
    return { raised, resolved };
  }

  private async notify(
    tx: EntityManager,
    alertId: string,
    what: 'raised' | 'resolved' | 'repeat',
    condition: AlertCondition,
  ): Promise<void> {
    this.logger.event(
      condition.severity === 'critical' && what !== 'resolved' ? 'error' : 'warn',
      `alert ${what}: ${condition.message}`,
      {
        alertId,
        kind: condition.kind,
        subject: condition.subject,
      },
    );
    if (!this.config.MONITOR_ALERT_WEBHOOK_URL) return;
    await tx.query(`INSERT INTO alert_notifications (id, alert_id, what, body) VALUES ($1, $2, $3, $4)`, [
      uuidv7(),
      alertId,
      what,
      JSON.stringify(alertMessageBody(what, condition)),
    ]);
  }

  /**
   * Per durable consumer of every service, the messages it has not acknowledged yet; null when
   * NATS is not connected or does not answer in time (unknown is not the same as no lag). A
   * consumer not created yet has no lag.
   */
  private async consumerLag(): Promise<Record<string, number> | null> {
    if (!this.jetstream.isConnected()) return null;
    const durables = Object.values(BUS_SUBSCRIPTIONS).flatMap((subscriptions) =>
      subscriptions.map((s) => s.durable),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>(
      (resolve) => (timer = setTimeout(resolve, CONSUMER_LAG_TIMEOUT_MS, null)),
    );
    const asked = Promise.all(
      durables.map(async (durable) => [durable, await this.jetstream.consumerPending(durable)] as const),
    ).then(Object.fromEntries, () => null);
    return Promise.race([asked, timeout]).finally(() => clearTimeout(timer));
  }

  private meta(): EventMetadata {
    return { correlationId: uuidv7(), causationId: null, actor: 'monitor' };
  }
}
