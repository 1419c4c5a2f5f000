import { EntityManager } from 'typeorm';
import {
  AFTER_SENT,
  BATCH_EVENT_MAX_BYTES,
  EventData,
  EventMetadata,
  inPayloadParts,
  newEvent,
  NewEvent,
} from '@edm/events';
import { EventStore, StreamAppend, uuidv7 } from '@edm/event-store';
import { completeTasksIfDone } from '@edm/workflows';
import { DispatchService, LeasedSubTask } from './lease-sub-tasks';
import { OutcomeDecision } from './send-outcome';

/**
 * Statuses from which a late-recorded send still adds its provider message id: `unknown` (the
 * lease expired meanwhile), and every status a provider's event moves a sent mail to; `sent`
 * among them, as an `accepted` event can mark the sub-task sent while the rest of its paced
 * batch is still going out, before the dispatcher records the send.
 */
const SENT_OR_LATER: readonly string[] = ['unknown', ...AFTER_SENT];

/** The sends in parts whose SubTaskBatchSent events stay below `maxBytes` (provider message ids vary). */
export function byPayloadSize<T extends { providerMessageId: string | null }>(
  sent: readonly T[],
  maxBytes = BATCH_EVENT_MAX_BYTES,
): T[][] {
  // Sub-task id, send time, keys and quotes: about 110 bytes besides the message id.
  return inPayloadParts(sent, (item) => 110 + Buffer.byteLength(item.providerMessageId ?? ''), maxBytes);
}

export interface SendResult {
  subTask: LeasedSubTask;
  decision: OutcomeDecision;
}

/**
 * Records a batch of send outcomes with the service's health and freezes the service on an
 * account error, all in one transaction. A sub-task returned to pending whose task was cancelled
 * meanwhile is cancelled instead, so a cancelled task never keeps pending work. The quota the
 * lease counted for a mail of which nothing reached the provider (a connection refused, a request
 * never written) is given back, if the batch's quota window (`quotaWindowStart`, null: none
 * known) is still the service's: a provider down for an hour must not use up the day's quota
 * with retries it never saw. An outcome dropped because the lease is no longer ours still gives
 * its quota back, as the mail did not go out all the same.
 */
export async function recordOutcomes(
  tx: EntityManager,
  store: EventStore,
  service: DispatchService,
  results: readonly SendResult[],
  quotaWindowStart: Date | null,
  freezeUntil: (frozenCount: number) => Date,
  meta: EventMetadata,
  owner: string,
  onDropped: (subTaskId: string, outcome: string, status: string) => void,
): Promise<{ frozen: boolean }> {
  // The rows as they are now: a webhook may have moved a sub-task on (delivered before our own
  // write), or the lease may have expired and been reclaimed meanwhile. Locked in id order, as
  // webhook-ingest locks them, so the two never deadlock over a batch they share.
  const current = new Map<string, { status: string; version: number; lease_owner: string | null }>(
    (
      await tx.query(
        `SELECT id, status, version, lease_owner FROM sub_tasks WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE`,
        [results.map((r) => r.subTask.id)],
      )
    ).map((r: { id: string; status: string; version: number; lease_owner: string | null }) => [r.id, r]),
  );
  const applied: SendResult[] = [];
  for (const result of results) {
    const { subTask, decision } = result;
    const row = current.get(subTask.id);
    const stillOurs = row?.status === 'sending' && row.lease_owner === owner;
    // A send that went through is recorded even if a webhook or the reaper got there first: it
    // carries the provider's message id, and the projection never moves the status backwards.
    const sentAnyway =
      decision.event.type === 'SubTaskSent' && row !== undefined && SENT_OR_LATER.includes(row.status);
    if (!row || (!stillOurs && !sentAnyway)) {
      onDropped(subTask.id, decision.event.type, row?.status ?? 'missing');
      continue;
    }
    applied.push(result);
  }

  let failures: number | null = null;
  let lastError: string | null = null;
  let lastSent = false;
  for (const { decision } of applied) {
    if (decision.serviceFailure) {
      failures = (failures ?? 0) + 1;
      lastError = 'reason' in decision.event.data ? String(decision.event.data.reason) : lastError;
    } else {
      failures = 0;
      lastSent ||= decision.event.type === 'SubTaskSent';
    }
  }
  const quotaBack = quotaWindowStart ? results.filter((r) => r.decision.quotaBack).length : 0;
  // A success resets the tally (and the freeze back-off); failures after it add up.
  const [runtime = { frozen_count: 0 }] = await tx
    .query(
      `UPDATE service_runtime
        SET consecutive_failures = CASE WHEN $2::int = 0 THEN 0 ELSE consecutive_failures + $2::int END,
            frozen_count = CASE WHEN $2::int = 0 THEN 0 ELSE frozen_count END,
            last_error = coalesce($3, last_error),
            last_sent_at = CASE WHEN $4 THEN clock_timestamp() ELSE last_sent_at END,
            quota_used = CASE WHEN quota_window_start = $6 THEN greatest(0, quota_used - $5::int)
                              ELSE quota_used END
      WHERE service_id = $1
        -- The row is the service's hot spot (every lease locks it): a healthy batch that would only
        -- move last_sent_at by less than a second leaves it alone, and waits for no lock.
        AND ($2::int > 0 OR consecutive_failures <> 0 OR frozen_count <> 0 OR $5::int > 0
             OR ($4 AND (last_sent_at IS NULL OR last_sent_at < clock_timestamp() - interval '1 second')))
      RETURNING frozen_count`,
      [service.id, failures ?? 0, lastError, lastSent, quotaBack, quotaWindowStart],
    )
    .then((r: [{ frozen_count: number }[], number]) => r[0]);

  // Whether the task was cancelled is read under its row lock: the cancel holds that lock until
  // it commits and cancels only the sub-tasks pending then, so one read without it could miss a
  // cancel committing meanwhile and put our sub-task back to pending under a cancelled task.
  // FOR UPDATE, not SHARE: completeTasksIfDone below takes it anyway, and two recordings of one
  // task upgrading a shared lock would deadlock. Taken after the sub-tasks and the service's
  // runtime row, in the order the lease, webhook-ingest and completion take them.
  const cancelled = new Set<string>(
    (
      await tx.query(`SELECT id, status FROM tasks WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE`, [
        [...new Set(applied.map((r) => r.subTask.taskId))],
      ])
    )
      .filter((r: { status: string }) => r.status === 'cancelled')
      .map((r: { id: string }) => r.id),
  );
  const appends: StreamAppend[] = [];
  // Accepted sends are recorded per task as one SubTaskBatchSent: an event per batch, not per mail.
  const sentByTask = new Map<string, EventData<'SubTaskBatchSent'>['sent']>();
  for (const { subTask, decision } of applied) {
    const row = current.get(subTask.id)!;
    const backToPending =
      decision.event.type === 'SubTaskReleased' || decision.event.type === 'SubTaskRetryScheduled';
    const event: NewEvent =
      backToPending && cancelled.has(subTask.taskId)
        ? newEvent('SubTaskCancelled', { subTaskId: subTask.id, taskId: subTask.taskId })
        : decision.event;
    if (event.type === 'SubTaskSent') {
      const { subTaskId, providerMessageId, sentAt } = event.data;
      let sent = sentByTask.get(subTask.taskId);
      if (!sent) sentByTask.set(subTask.taskId, (sent = []));
      sent.push({ subTaskId, providerMessageId, sentAt });
      continue;
    }
    appends.push({ streamId: `subtask-${subTask.id}`, expectedVersion: row.version, events: [event] });
  }
  for (const [taskId, sent] of sentByTask) {
    for (const part of byPayloadSize(sent)) {
      appends.push({
        streamId: `sends-${uuidv7()}`,
        expectedVersion: 'no_stream',
        events: [newEvent('SubTaskBatchSent', { taskId, serviceId: service.id, sent: part })],
      });
    }
  }
  await store.append(tx, appends, meta);

  const freezeReason = applied.find((r) => r.decision.freezeReason)?.decision.freezeReason;
  let frozen = false;
  if (freezeReason) {
    const [current] = await tx.query(`SELECT status FROM sending_services WHERE id = $1 FOR UPDATE`, [
      service.id,
    ]);
    if (current.status === 'active') {
      await store.append(
        tx,
        [
          {
            streamId: `service-${service.id}`,
            expectedVersion: 'any',
            events: [
              newEvent('ServiceFrozen', {
                serviceId: service.id,
                reason: freezeReason,
                until: freezeUntil(runtime.frozen_count).toISOString(),
              }),
            ],
          },
        ],
        meta,
      );
      await tx.query(`UPDATE service_runtime SET frozen_count = frozen_count + 1 WHERE service_id = $1`, [
        service.id,
      ]);
      frozen = true;
    }
  }
  await completeTasksIfDone(
    tx,
    store,
    results.map((r) => r.subTask.taskId),
    meta,
  );
  return { frozen };
}
