import { EntityManager } from 'typeorm';
import { EventMetadata, newEvent, NewEvent } from '@edm/events';
import { EventStore } from '@edm/event-store';
import { completeTasksIfDone } from './complete-tasks';

/** Providers that dedupe a resend by our idempotency key: a lost outcome can safely be retried. */
export const IDEMPOTENT_PROVIDERS: readonly string[] = ['sandbox'];

interface HeldRow {
  id: string;
  task_id: string;
  status: 'allocated' | 'sending';
  service_id: string;
  attempts: number;
  version: number;
  provider: string | null;
}

/**
 * Which leases: expired ones (any replica's reaper), a replica's own not yet sending (its
 * shutdown), or ones held longer than a threshold whatever their expiry (the monitor's repair).
 */
export type LeaseSelection =
  { expired: true } | { owner: string; onlyAllocated: true } | { heldLongerThanMs: number; taskId?: string };

function selection(which: LeaseSelection): [string, unknown[], string] {
  if ('expired' in which)
    return [`s.status IN ('allocated', 'sending') AND s.lease_expires_at < now()`, [], 'lease expired'];
  if ('owner' in which)
    return [`s.status = 'allocated' AND s.lease_owner = $2`, [which.owner], 'dispatcher shutting down'];
  return [
    `s.status IN ('allocated', 'sending') AND s.updated_at < now() - make_interval(secs => $2::float8 / 1000)
     AND ($3::uuid IS NULL OR s.task_id = $3::uuid)`,
    [which.heldLongerThanMs, which.taskId ?? null],
    'stuck lease released by the monitor',
  ];
}

/**
 * Gives back leases: expired ones (their holder died) or, at shutdown, a replica's own. A lease
 * that never started sending goes back to pending untouched; one that was sending is `unknown`
 * (the provider may have it), unless the provider dedupes resends. Never left `allocated`.
 */
export async function reclaimLeases(
  tx: EntityManager,
  store: EventStore,
  which: LeaseSelection,
  meta: EventMetadata,
  limit = 500,
): Promise<number> {
  const [where, params, why] = selection(which);
  const rows: HeldRow[] = await tx.query(
    `SELECT s.id, s.task_id, s.status, s.service_id, s.attempts, s.version, sv.provider
       FROM sub_tasks s LEFT JOIN sending_services sv ON sv.id = s.service_id
      WHERE ${where}
      ORDER BY s.lease_expires_at
      LIMIT $1
        FOR UPDATE OF s SKIP LOCKED`,
    [limit, ...params],
  );
  if (rows.length === 0) return 0;
  // Whether a task was cancelled is read under its row lock: the cancel holds it until it commits
  // and cancels only the sub-tasks pending then, so a read without it could miss a cancel
  // committing meanwhile and release our rows to pending under a cancelled task. FOR UPDATE, as
  // completeTasksIfDone below takes it anyway; in id order, after the sub-tasks, as elsewhere.
  const taskStatus = new Map<string, string>(
    (
      await tx.query(`SELECT id, status FROM tasks WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE`, [
        [...new Set(rows.map((r) => r.task_id))],
      ])
    ).map((t: { id: string; status: string }) => [t.id, t.status]),
  );
  await store.append(
    tx,
    rows.map((row) => {
      const ref = { subTaskId: row.id, taskId: row.task_id };
      let event: NewEvent;
      if (row.status === 'sending' && !IDEMPOTENT_PROVIDERS.includes(row.provider ?? '')) {
        event = newEvent('SubTaskUnknown', {
          ...ref,
          serviceId: row.service_id,
          reason: `${why} while sending: the provider may have accepted it`,
        });
      } else if (taskStatus.get(row.task_id) === 'cancelled') {
        event = newEvent('SubTaskCancelled', ref);
      } else {
        event = newEvent('SubTaskReleased', {
          ...ref,
          reason:
            row.status === 'sending'
              ? `${why} while sending; the provider dedupes the resend`
              : `${why} before sending`,
          attempts: row.status === 'allocated' ? row.attempts - 1 : row.attempts,
        });
      }
      return { streamId: `subtask-${row.id}`, expectedVersion: row.version, events: [event] };
    }),
    meta,
  );
  await completeTasksIfDone(
    tx,
    store,
    rows.map((r) => r.task_id),
    meta,
  );
  return rows.length;
}

/** Scheduled tasks whose time has come start sending. */
export async function startDueTasks(
  tx: EntityManager,
  store: EventStore,
  meta: EventMetadata,
): Promise<number> {
  const due: { id: string }[] = await tx.query(
    `SELECT id FROM tasks WHERE status = 'scheduled' AND scheduled_at <= now() ORDER BY scheduled_at LIMIT 100 FOR UPDATE SKIP LOCKED`,
  );
  for (const { id } of due) {
    await store.append(
      tx,
      [
        {
          streamId: `task-${id}`,
          expectedVersion: 'any',
          events: [newEvent('TaskStarted', { taskId: id })],
        },
      ],
      meta,
    );
  }
  return due.length;
}
