import { EntityManager } from 'typeorm';
import { AppConfig } from '@edm/config';
import { QUOTA_EXHAUSTED_SQL } from '@edm/workflows';

export interface AlertCondition {
  kind: string;
  subject: string;
  accountId: string | null;
  severity: 'info' | 'warning' | 'critical';
  message: string;
  details: Record<string, unknown>;
}

export interface RuleContext {
  tx: EntityManager;
  config: AppConfig;
  /**
   * Messages each durable consumer has not acknowledged yet, read from the bus before the
   * evaluation; null when the bus could not be asked (its consumer-lag alerts then stay as they are).
   */
  consumerLag: Record<string, number> | null;
}

/** Kinds whose firing alerts an evaluation neither raises nor resolves, because it could not look. */
export const unknownKinds = ({ consumerLag }: Pick<RuleContext, 'consumerLag'>): string[] =>
  consumerLag === null ? ['consumer-lag'] : [];

type Rule = (context: RuleContext) => Promise<AlertCondition[]>;

const minutes = (ms: number) => Math.round(ms / 60_000);

/** Sub-tasks leased far longer than any send takes: their holder is gone or wedged. */
export const stuckSubTasks: Rule = async ({ tx, config }) =>
  (
    await tx.query(
      `SELECT s.task_id, t.account_id, t.name, count(*)::int AS n, min(s.updated_at) AS since
         FROM sub_tasks s JOIN tasks t ON t.id = s.task_id
        WHERE s.status IN ('allocated', 'sending') AND s.updated_at < now() - make_interval(secs => $1::float8 / 1000)
        GROUP BY s.task_id, t.account_id, t.name`,
      [config.MONITOR_STUCK_LEASE_MS],
    )
  ).map((r: { task_id: string; account_id: string; name: string; n: number; since: Date }) => ({
    kind: 'stuck-sub-tasks',
    subject: `task:${r.task_id}`,
    accountId: r.account_id,
    severity: 'critical' as const,
    message: `${r.n} sub-tasks of task "${r.name}" leased for more than ${minutes(config.MONITOR_STUCK_LEASE_MS)} min (since ${r.since.toISOString()}); releasing them`,
    details: { taskId: r.task_id, stuck: r.n, since: r.since.toISOString() },
  }));

/** Mail went out and no webhook came back: the provider's callbacks are not reaching us. */
export const webhookSilence: Rule = async ({ tx, config }) =>
  (
    await tx.query(
      `SELECT m.service_id, s.account_id, s.name, m.last_sent_at, m.last_webhook_at, m.first_unanswered_sent_at
         FROM monitor_service_state m JOIN sending_services s ON s.id = m.service_id
        WHERE m.last_sent_at > now() - make_interval(secs => $1::float8 / 1000)
          AND m.first_unanswered_sent_at < now() - make_interval(secs => $2::float8 / 1000)`,
      [config.MONITOR_WEBHOOK_SILENCE_MS, config.MONITOR_WEBHOOK_GRACE_MS],
    )
  ).map(
    (r: {
      service_id: string;
      account_id: string;
      name: string;
      last_sent_at: Date;
      last_webhook_at: Date | null;
      first_unanswered_sent_at: Date;
    }) => ({
      kind: 'webhook-silence',
      subject: `service:${r.service_id}`,
      accountId: r.account_id,
      severity: 'warning' as const,
      message: `service "${r.name}" has sent mail since ${r.first_unanswered_sent_at.toISOString()} and received no webhook${r.last_webhook_at ? ` (last one ${r.last_webhook_at.toISOString()})` : ' at all'}: check the provider's webhook URL`,
      details: { serviceId: r.service_id, lastSentAt: r.last_sent_at, lastWebhookAt: r.last_webhook_at },
    }),
  );

/** Frozen, exhausted or failing services. */
export const serviceHealth: Rule = async ({ tx, config }) => {
  const rows: {
    id: string;
    account_id: string;
    name: string;
    status: string;
    status_reason: string | null;
    frozen_until: Date | null;
    daily_quota: number | null;
    quota_exhausted: boolean;
    consecutive_failures: number;
    last_error: string | null;
  }[] = await tx.query(
    `SELECT s.id, s.account_id, s.name, s.status, s.status_reason, s.frozen_until, s.daily_quota,
            ${QUOTA_EXHAUSTED_SQL} AS quota_exhausted, r.consecutive_failures, r.last_error
       FROM sending_services s JOIN service_runtime r ON r.service_id = s.id WHERE s.status <> 'disabled'`,
  );
  const out: AlertCondition[] = [];
  for (const r of rows) {
    const base = { subject: `service:${r.id}`, accountId: r.account_id };
    if (r.status === 'frozen') {
      out.push({
        ...base,
        kind: 'service-frozen',
        severity: 'warning',
        message: `service "${r.name}" is frozen${r.frozen_until ? ` until ${r.frozen_until.toISOString()}` : ''}: ${r.status_reason ?? 'no reason given'}`,
        details: { serviceId: r.id, reason: r.status_reason, frozenUntil: r.frozen_until },
      });
    }
    if (r.quota_exhausted) {
      out.push({
        ...base,
        kind: 'service-quota-exhausted',
        severity: 'warning',
        message: `service "${r.name}" used its daily quota of ${r.daily_quota} with mail waiting`,
        details: { serviceId: r.id, quota: r.daily_quota },
      });
    }
    if (r.consecutive_failures >= config.MONITOR_SERVICE_FAILURES) {
      out.push({
        ...base,
        kind: 'service-failing',
        severity: 'critical',
        message: `service "${r.name}" failed ${r.consecutive_failures} sends in a row; last error: ${r.last_error ?? 'unknown'}`,
        details: { serviceId: r.id, consecutiveFailures: r.consecutive_failures, lastError: r.last_error },
      });
    }
  }
  return out;
};

/** Tasks with pending work and either no usable service, or usable services and no progress. */
export const taskProgress: Rule = async ({ tx, config }) => {
  const rows: {
    id: string;
    account_id: string;
    name: string;
    pending: number;
    usable: number;
    services: string | null;
    last_progress: Date;
  }[] = await tx.query(
    `SELECT t.id, t.account_id, t.name,
            (SELECT count(*)::int FROM sub_tasks p WHERE p.task_id = t.id AND p.status = 'pending') AS pending,
            count(s.id) FILTER (WHERE s.status = 'active' AND NOT ${QUOTA_EXHAUSTED_SQL})::int AS usable,
            string_agg(s.name || ' ' || s.status || coalesce(' (' || s.status_reason || ')', ''), '; ') AS services,
            greatest(t.updated_at, coalesce(m.last_progress_at, t.updated_at)) AS last_progress
       FROM tasks t
       LEFT JOIN sending_services s ON s.account_id = t.account_id AND (cardinality(t.service_ids) = 0 OR s.id = ANY (t.service_ids))
       LEFT JOIN service_runtime r ON r.service_id = s.id
       LEFT JOIN monitor_task_state m ON m.task_id = t.id
      WHERE t.status = 'sending'
      GROUP BY t.id, t.account_id, t.name, t.updated_at, m.last_progress_at`,
  );
  const out: AlertCondition[] = [];
  for (const r of rows) {
    if (r.pending === 0) continue;
    if (r.usable === 0) {
      out.push({
        kind: 'task-no-usable-service',
        subject: `task:${r.id}`,
        accountId: r.account_id,
        severity: 'critical',
        message: `${r.pending} sub-tasks of task "${r.name}" pending and no usable service: ${r.services ?? 'the task allows none'}`,
        details: { taskId: r.id, pending: r.pending, services: r.services },
      });
    } else if (Date.now() - r.last_progress.getTime() > config.MONITOR_TASK_STALL_MS) {
      out.push({
        kind: 'task-stalled',
        subject: `task:${r.id}`,
        accountId: r.account_id,
        severity: 'warning',
        message: `task "${r.name}" has ${r.pending} pending sub-tasks and ${r.usable} usable services but no progress since ${r.last_progress.toISOString()}`,
        details: { taskId: r.id, pending: r.pending, usable: r.usable, lastProgressAt: r.last_progress },
      });
    }
  }
  return out;
};

/** Too many of the last hour's provider events matched no sub-task. */
export const unmatchedRatio: Rule = async ({ tx, config }) => {
  const [r]: { total: number; unmatched: number }[] = await tx.query(
    `SELECT count(*)::int AS total, count(*) FILTER (WHERE match_status = 'unmatched')::int AS unmatched
       FROM mail_events WHERE received_at > now() - interval '1 hour' AND match_status IN ('matched', 'unmatched')`,
  );
  if (
    r.total < config.MONITOR_UNMATCHED_MIN_EVENTS ||
    r.unmatched / r.total <= config.MONITOR_UNMATCHED_RATIO
  )
    return [];
  return [
    {
      kind: 'webhook-unmatched-ratio',
      subject: 'system',
      accountId: null,
      severity: 'warning',
      message: `${r.unmatched} of ${r.total} webhook events in the last hour matched no sub-task`,
      details: r,
    },
  ];
};

/** The bus falling behind Postgres (relay) or a service falling behind the bus (consumers). */
export const busLag: Rule = async ({ tx, config, consumerLag }) => {
  const out: AlertCondition[] = [];
  const [relay]: { lag: string }[] = await tx.query(
    `SELECT (SELECT coalesce(max(global_position), 0) FROM events) - coalesce((SELECT max(position) FROM relay_checkpoints), 0) AS lag`,
  );
  if (Number(relay.lag) > config.MONITOR_RELAY_LAG_EVENTS) {
    out.push({
      kind: 'relay-lag',
      subject: 'system',
      accountId: null,
      severity: 'critical',
      message: `${relay.lag} committed events not yet published to the bus`,
      details: { lag: Number(relay.lag) },
    });
  }
  for (const [consumer, lag] of Object.entries(consumerLag ?? {})) {
    if (lag > config.MONITOR_CONSUMER_LAG_EVENTS) {
      out.push({
        kind: 'consumer-lag',
        subject: `consumer:${consumer}`,
        accountId: null,
        severity: 'warning',
        message: `consumer ${consumer} is ${lag} messages behind`,
        details: { consumer, lag },
      });
    }
  }
  return out;
};

/**
 * Stored webhooks that processing has not taken up in time: the raw requests are safe, but their
 * effects on sub-tasks and contacts are late, and providers' webhooks look silent to the rules
 * that read them. Served by the partial index on `received` rows.
 */
export const ingestBacklog: Rule = async ({ tx, config }) => {
  const [r]: { n: number; oldest: Date | null }[] = await tx.query(
    `SELECT count(*)::int AS n, min(received_at) AS oldest FROM event_logs
      WHERE status = 'received' AND received_at < now() - make_interval(secs => $1::float8 / 1000)`,
    [config.MONITOR_INGEST_BACKLOG_MS],
  );
  if (r.n === 0 || !r.oldest) return [];
  return [
    {
      kind: 'ingest-backlog',
      subject: 'system',
      accountId: null,
      severity: 'critical',
      message: `${r.n} stored webhooks not processed after ${Math.round(config.MONITOR_INGEST_BACKLOG_MS / 1_000)} s (oldest received ${r.oldest.toISOString()}): is webhook-ingest running, and is its processing failing?`,
      details: { waiting: r.n, oldestReceivedAt: r.oldest },
    },
  ];
};

export const RULES: readonly Rule[] = [
  stuckSubTasks,
  webhookSilence,
  serviceHealth,
  taskProgress,
  unmatchedRatio,
  busLag,
  ingestBacklog,
];
