import { EntityManager } from 'typeorm';
import { EventMetadata, newEvent } from '@edm/events';
import { EventStore } from '@edm/event-store';
import { completeTasksIfDone } from './complete-tasks';
import { reclaimLeases } from './reclaim-leases';
import { QUOTA_EXHAUSTED_SQL, QUOTA_USED_SQL } from './service-quota';

export interface DiagnosisThresholds {
  stuckLeaseMs: number;
  webhookGraceMs: number;
}

interface ServiceState {
  id: string;
  name: string;
  provider: string;
  status: string;
  statusReason: string | null;
  frozenUntil: Date | null;
  pace: unknown;
  dailyQuota: number | null;
  quotaUsed: number;
  quotaLeft: number | null;
  consecutiveFailures: number;
  lastError: string | null;
  lastSentAt: Date | null;
  lastWebhookAt: Date | null;
  usable: boolean;
}

/**
 * Everything the old diagnose script printed, from the live tables, with a verdict in words:
 * the task, its sub-tasks by status, the state of every service it may use, the webhooks that
 * came back, stuck leases, unmatched events and firing alerts.
 */
export async function diagnoseTask(tx: EntityManager, taskId: string, thresholds: DiagnosisThresholds) {
  const [task] = await tx.query(
    `SELECT id, account_id, name, status, service_ids, scheduled_at, created_at, updated_at, completed_at FROM tasks WHERE id = $1`,
    [taskId],
  );
  if (!task) return null;
  const counts: Record<string, number> = Object.fromEntries(
    (
      await tx.query(`SELECT status, count(*)::int AS n FROM sub_tasks WHERE task_id = $1 GROUP BY status`, [
        taskId,
      ])
    ).map((r: { status: string; n: number }) => [r.status, r.n]),
  );
  const services: ServiceState[] = (
    await tx.query(
      `SELECT s.id, s.name, s.provider, s.status, s.status_reason, s.frozen_until, s.pace, s.daily_quota,
              ${QUOTA_USED_SQL} AS quota_used, ${QUOTA_EXHAUSTED_SQL} AS quota_exhausted, r.consecutive_failures, r.last_error, r.last_sent_at,
              m.last_webhook_at
         FROM sending_services s JOIN service_runtime r ON r.service_id = s.id
         LEFT JOIN monitor_service_state m ON m.service_id = s.id
        WHERE s.account_id = $1 AND (cardinality($2::uuid[]) = 0 OR s.id = ANY ($2::uuid[]))
        ORDER BY s.created_at`,
      [task.account_id, task.service_ids],
    )
  ).map(
    (r: {
      id: string;
      name: string;
      provider: string;
      status: string;
      status_reason: string | null;
      frozen_until: Date | null;
      pace: unknown;
      daily_quota: number | null;
      quota_used: number;
      quota_exhausted: boolean;
      consecutive_failures: number;
      last_error: string | null;
      last_sent_at: Date | null;
      last_webhook_at: Date | null;
    }) => {
      const exhausted = r.quota_exhausted;
      return {
        id: r.id,
        name: r.name,
        provider: r.provider,
        status: r.status,
        statusReason: r.status_reason,
        frozenUntil: r.frozen_until,
        pace: r.pace,
        dailyQuota: r.daily_quota,
        quotaUsed: r.quota_used,
        quotaLeft: r.daily_quota === null ? null : Math.max(0, r.daily_quota - r.quota_used),
        consecutiveFailures: r.consecutive_failures,
        lastError: r.last_error,
        lastSentAt: r.last_sent_at,
        lastWebhookAt: r.last_webhook_at,
        usable: r.status === 'active' && !exhausted,
      };
    },
  );
  const webhooks = await tx.query(
    `SELECT coalesce(type, raw_type) AS type, match_status AS "matchStatus", match_strategy AS strategy, count(*)::int AS count
       FROM mail_events WHERE matched_task_id = $1 GROUP BY 1, 2, 3 ORDER BY 1`,
    [taskId],
  );
  const [unmatched] = await tx.query(
    `SELECT count(*)::int AS count FROM mail_events
      WHERE match_status IN ('pending', 'unmatched') AND service_id = ANY ($1::uuid[]) AND received_at >= $2`,
    [services.map((s) => s.id), task.created_at],
  );
  const [stuck] = await tx.query(
    `SELECT count(*)::int AS count, min(updated_at) AS since FROM sub_tasks
      WHERE task_id = $1 AND status IN ('allocated', 'sending')
        AND (lease_expires_at < now() OR updated_at < now() - make_interval(secs => $2::float8 / 1000))`,
    [taskId, thresholds.stuckLeaseMs],
  );
  const alerts = await tx.query(
    `SELECT id, kind, subject, severity, message, first_seen_at AS "firstSeenAt" FROM alerts
      WHERE status = 'firing' AND (subject = $1 OR subject = ANY ($2::text[])) ORDER BY first_seen_at`,
    [`task:${taskId}`, services.map((s) => `service:${s.id}`)],
  );
  const findings = verdict(task, counts, services, webhooks, stuck, thresholds);
  return {
    task: {
      id: task.id,
      name: task.name,
      status: task.status,
      scheduledAt: task.scheduled_at,
      createdAt: task.created_at,
      completedAt: task.completed_at,
    },
    counts,
    services,
    webhooks: { byType: webhooks, unmatchedForTheseServices: unmatched.count },
    stuckLeases: { count: stuck.count, since: stuck.since },
    alerts,
    findings,
    verdict: findings[0],
  };
}

function verdict(
  task: { status: string; scheduled_at: Date | null; created_at: Date },
  counts: Record<string, number>,
  services: ServiceState[],
  webhooks: { count: number }[],
  stuck: { count: number; since: Date | null },
  thresholds: DiagnosisThresholds,
): string[] {
  const n = (s: string) => counts[s] ?? 0;
  const sent = ['sent', 'delivered', 'opened', 'clicked', 'bounced', 'complained', 'unsubscribed'].reduce(
    (t, s) => t + n(s),
    0,
  );
  const describe = (s: ServiceState) =>
    s.status === 'frozen'
      ? `service ${s.name} frozen${s.frozenUntil ? ` until ${s.frozenUntil.toISOString()}` : ''} because ${s.statusReason ?? 'no reason recorded'}`
      : s.status === 'disabled'
        ? `service ${s.name} disabled${s.statusReason ? ` (${s.statusReason})` : ''}`
        : `service ${s.name} has used its daily quota of ${s.dailyQuota}`;
  const findings: string[] = [];
  if (task.status === 'completed')
    findings.push(
      `completed: ${sent} sent, ${n('failed')} failed, ${n('unknown')} unknown, ${n('skipped')} skipped`,
    );
  if (task.status === 'cancelled')
    findings.push(`cancelled by an operator: ${sent} had been sent, ${n('cancelled')} cancelled`);
  if (task.status === 'paused')
    findings.push(`paused by an operator with ${n('pending')} sub-tasks pending; resume it to continue`);
  if (task.status === 'scheduled')
    findings.push(`scheduled for ${task.scheduled_at?.toISOString()}; nothing is sent before then`);
  if (stuck.count)
    findings.push(
      `${stuck.count} sub-tasks stuck in a lease since ${stuck.since?.toISOString()}: repair releases them`,
    );
  if (task.status === 'sending' && n('pending') > 0) {
    const usable = services.filter((s) => s.usable);
    if (usable.length === 0) {
      findings.push(
        services.length
          ? `${n('pending')} sub-tasks pending and no usable service: ${services.map(describe).join('; ')}`
          : `${n('pending')} sub-tasks pending and the task allows no existing service`,
      );
    } else {
      findings.push(
        `sending: ${n('pending')} pending over ${usable.length} usable services (${usable.map((s) => s.name).join(', ')})`,
      );
    }
  }
  const heard = webhooks.reduce((t, w) => t + w.count, 0);
  const silent = services.filter(
    (s) =>
      s.lastSentAt &&
      Date.now() - s.lastSentAt.getTime() > thresholds.webhookGraceMs &&
      (!s.lastWebhookAt || s.lastWebhookAt < s.lastSentAt),
  );
  if (sent > 0 && heard === 0 && silent.length) {
    findings.push(
      `${sent} mails sent and no webhook received for this task: check the webhook URL configured at ${silent.map((s) => `${s.name} (${s.provider})`).join(', ')}`,
    );
  }
  if (findings.length === 0) findings.push(`${task.status}: ${sent} sent, ${n('pending')} pending`);
  return findings;
}

/**
 * Repair, idempotent: releases stuck and expired leases, retries the webhook events left
 * unmatched for the task's services, completes the task if nothing is left, and wakes the
 * dispatcher (by the TaskRepaired event) when anything changed. Counts are computed live from
 * sub-task rows, so there is nothing to recompute; the report says what was checked.
 */
export async function repairTask(
  tx: EntityManager,
  store: EventStore,
  taskId: string,
  thresholds: DiagnosisThresholds,
  meta: EventMetadata,
) {
  const [task] = await tx.query(
    `SELECT id, account_id, service_ids, created_at FROM tasks WHERE id = $1 FOR UPDATE`,
    [taskId],
  );
  if (!task) return null;
  const released =
    (await reclaimLeases(tx, store, { expired: true, taskId }, meta, 100_000)) +
    (await reclaimLeases(tx, store, { heldLongerThanMs: thresholds.stuckLeaseMs, taskId }, meta, 100_000));
  // TypeORM answers an UPDATE … RETURNING with [rows, affected].
  const [retried]: [unknown[], number] = await tx.query(
    `UPDATE mail_events SET match_status = 'pending', next_match_at = clock_timestamp()
      WHERE match_status = 'unmatched' AND received_at >= $3
        AND service_id IN (SELECT id FROM sending_services WHERE account_id = $1 AND (cardinality($2::uuid[]) = 0 OR id = ANY ($2::uuid[])))
      RETURNING id`,
    [task.account_id, task.service_ids, task.created_at],
  );
  const completed = await completeTasksIfDone(tx, store, [taskId], meta);
  const [drift] = await tx.query(
    `SELECT count(*)::int AS n FROM sub_tasks s
      WHERE s.task_id = $1 AND s.version <> (SELECT coalesce(max(e.version), 0) FROM events e WHERE e.stream_id = 'subtask-' || s.id)`,
    [taskId],
  );
  if (released || retried.length) {
    await store.append(
      tx,
      [
        {
          streamId: `task-${taskId}`,
          expectedVersion: 'any',
          events: [
            newEvent('TaskRepaired', {
              taskId,
              releasedLeases: released,
              retriedWebhookEvents: retried.length,
            }),
          ],
        },
      ],
      meta,
    );
  }
  return {
    releasedLeases: released,
    retriedWebhookEvents: retried.length,
    completed: completed.length > 0,
    subTasksOutOfStepWithEvents: drift.n,
    dispatcherWoken: released > 0 || retried.length > 0,
    changed: released > 0 || retried.length > 0 || completed.length > 0,
  };
}
