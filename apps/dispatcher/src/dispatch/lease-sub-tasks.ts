import { EntityManager } from 'typeorm';
import { EventMetadata, newEvent, Pace } from '@edm/events';
import { EventStore, uuidv7 } from '@edm/event-store';
import { completeTasksIfDone } from '@edm/workflows';
import { capacity, consume, ServiceLimits, ServiceRuntime } from './service-capacity';

export interface DispatchService {
  id: string;
  accountId: string;
  name: string;
  provider: string;
  status: 'active' | 'frozen' | 'disabled';
  frozenUntil: Date | null;
  statusReason: string | null;
  limits: ServiceLimits;
  fromEmail: string;
  fromName: string | null;
  options: Record<string, unknown>;
  credentialsSealed: string | null;
  updatedAt: Date;
  frozenCount: number;
}

export interface LeasedSubTask {
  id: string;
  taskId: string;
  email: string;
  trackingId: string;
  attempt: number;
  /** The contact's name and attributes, for the template (null without a contact). */
  contactName: string | null;
  attributes: Record<string, unknown> | null;
}

/** What every mail of a task says, before the contact's values are put in. */
export interface TaskContent {
  subject: string;
  html: string | null;
  text: string | null;
}

/** How far ahead a slot may be claimed, so the mail is ready when its slot comes. */
export const SLOT_LOOKAHEAD_MS = 250;
/**
 * The earliest a claimed slot may be: the time a lease needs to become a request (its commit,
 * the mail rendered). A mail whose slot were "now" would leave late by that much, and the gap to
 * the next, punctual mail would be short by as much.
 */
export const SLOT_PREPARATION_MS = 50;

export type LeaseResult =
  | {
      kind: 'leased';
      service: DispatchService;
      leased: LeasedSubTask[];
      /** The content of their task (a batch is of one task). */
      content: TaskContent;
      /** Per leased sub-task, in order: not to be sent before this (database clock). */
      notBefore: Date[];
      /** The database clock when leased, to turn `notBefore` into a local wait. */
      databaseNow: Date;
      /** The quota window the batch was counted in (quota given back only while it lasts). */
      quotaWindowStart: Date;
    }
  | { kind: 'pace'; service: DispatchService; waitMs: number }
  | { kind: 'quota' | 'no-work' | 'not-active'; service: DispatchService | null };

export interface LeaseRequest {
  serviceId: string;
  owner: string;
  maxBatch: number;
  leaseMs: number;
}

/**
 * The leasing rule, in one place. Under the service's runtime row lock (so every replica sees one
 * pace and one quota), it computes how many mails the service may send now, then takes that many
 * ready sub-tasks of the task next in line, in one statement:
 *
 * - eligible tasks: `sending`, of the service's account, allowing this service (or all services);
 * - next in line: highest priority first, then the task served longest ago (round robin), so a huge
 *   task never starves a small one;
 * - rows are claimed with FOR UPDATE SKIP LOCKED, so concurrent leases never take the same one,
 *   and get a lease expiry after which any replica reclaims them;
 * - a row whose contact is no longer active is never leased: it is skipped instead.
 *
 * The batch is leased and marked `sending` at once (one row write per sub-task, one
 * SubTaskBatchLeased event for the batch), with everything its mails need read in the same
 * transaction: nothing touches the database between this commit and the requests. Had anything
 * failed before the commit, the batch would still be pending; once committed, a lost outcome is
 * `unknown`, never a second send.
 */
export async function leaseSubTasks(
  tx: EntityManager,
  store: EventStore,
  request: LeaseRequest,
  meta: EventMetadata,
): Promise<LeaseResult> {
  const [row] = await tx.query(
    `SELECT s.id, s.account_id, s.name, s.provider, s.status, s.frozen_until, s.status_reason, s.pace, s.daily_quota,
            s.quota_reset_hour_utc, s.from_email, s.from_name, s.options, s.credentials_sealed, s.updated_at,
            r.next_slot_at, r.quota_used, r.quota_window_start, r.quota_exhausted_at, r.frozen_count, clock_timestamp() AS now
       FROM sending_services s JOIN service_runtime r ON r.service_id = s.id
      WHERE s.id = $1
        FOR UPDATE OF r`,
    [request.serviceId],
  );
  if (!row) return { kind: 'not-active', service: null };
  const service = toService(row);
  if (service.status !== 'active') return { kind: 'not-active', service };
  const now: Date = row.now;
  const runtime: ServiceRuntime = {
    nextSlotAt: row.next_slot_at,
    quotaUsed: row.quota_used,
    quotaWindowStart: row.quota_window_start,
  };
  const earliest = new Date(now.getTime() + SLOT_PREPARATION_MS);
  const room = capacity(
    service.limits,
    runtime,
    earliest,
    request.maxBatch,
    SLOT_LOOKAHEAD_MS - SLOT_PREPARATION_MS,
  );
  if (room.allowed === 0) {
    if (room.quotaLeft === 0) {
      await noteQuotaExhausted(tx, store, service, row.quota_exhausted_at, room.windowStart, meta);
      return { kind: 'quota', service };
    }
    return { kind: 'pace', service, waitMs: room.waitMs };
  }

  // Suppressed rows count against a statement's batch: one that took only those leases again,
  // so the work behind them does not wait for the next poll.
  let picked: PickedRow[];
  do {
    picked = await tx.query(LEASE_STATEMENT, [
      service.id,
      service.accountId,
      request.owner,
      request.leaseMs,
      room.allowed,
    ]);
    const suppressed = picked.filter((p) => !p.leased);
    if (suppressed.length > 0)
      await skipSuppressed(tx, store, suppressed, suppressed.length === picked.length, meta);
  } while (picked.length > 0 && picked.every((p) => !p.leased));
  const taken = picked.filter((p) => p.leased);
  if (taken.length === 0) return { kind: 'no-work', service };
  const leased = taken.map(toLeased);
  const leaseExpiresAt = taken[0].leaseExpiresAt!;

  const after = consume(service.limits, runtime, earliest, leased.length);
  await tx.query(
    `UPDATE service_runtime SET next_slot_at = $2, quota_used = $3, quota_window_start = $4 WHERE service_id = $1`,
    [service.id, after.nextSlotAt, after.quotaUsed, after.quotaWindowStart],
  );
  await store.append(
    tx,
    [
      {
        streamId: `lease-${uuidv7()}`,
        expectedVersion: 'no_stream',
        events: [
          newEvent('SubTaskBatchLeased', {
            taskId: leased[0].taskId,
            serviceId: service.id,
            leaseOwner: request.owner,
            leaseExpiresAt: leaseExpiresAt.toISOString(),
            subTasks: leased.map((s) => ({ subTaskId: s.id, attempt: s.attempt })),
          }),
        ],
      },
    ],
    meta,
    { alreadyProjected: true },
  );
  const [content]: TaskContent[] = await tx.query(`SELECT subject, html, text FROM tasks WHERE id = $1`, [
    leased[0].taskId,
  ]);
  // Last: every service's leases of this task update its row, which stays locked until commit.
  await tx.query(
    `INSERT INTO task_dispatch (task_id, last_leased_at) VALUES ($1, clock_timestamp())
     ON CONFLICT (task_id) DO UPDATE SET last_leased_at = excluded.last_leased_at`,
    [leased[0].taskId],
  );
  const notBefore = leased.map((_, i) =>
    room.intervalMs > 0
      ? new Date(Math.max(earliest.getTime(), room.firstSlotAt.getTime() + i * room.intervalMs))
      : now,
  );
  return {
    kind: 'leased',
    service,
    leased,
    content,
    notBefore,
    databaseNow: now,
    quotaWindowStart: after.quotaWindowStart,
  };
}

/**
 * The ready sub-tasks of the task next in line, locked; those whose contact is active (or who
 * have none) are leased, the others come back unleased. A contact suppressed while its
 * sub-task was in flight (sending, then back to pending after a passing error) escaped the
 * webhook's skipping: this is the last point before the send where that shows.
 */
const LEASE_STATEMENT = `
  WITH next_task AS (
    SELECT t.id FROM tasks t LEFT JOIN task_dispatch d ON d.task_id = t.id
     WHERE t.status = 'sending' AND t.account_id = $2
       AND (cardinality(t.service_ids) = 0 OR $1::uuid = ANY (t.service_ids))
       AND EXISTS (SELECT 1 FROM sub_tasks p WHERE p.task_id = t.id AND p.status = 'pending' AND p.next_attempt_at <= now())
     ORDER BY t.priority DESC, d.last_leased_at ASC NULLS FIRST, t.created_at
     LIMIT 1
  ), picked AS (
    SELECT p.id, p.task_id, p.version, p.next_attempt_at, c.status AS contact_status, c.name, c.attributes
      FROM sub_tasks p LEFT JOIN contacts c ON c.id = p.contact_id
     WHERE p.task_id = (SELECT id FROM next_task) AND p.status = 'pending' AND p.next_attempt_at <= now()
     ORDER BY p.next_attempt_at, p.id
     LIMIT $5
       FOR UPDATE OF p SKIP LOCKED
  ), leased AS (
    UPDATE sub_tasks s
       SET status = 'sending', service_id = $1, lease_owner = $3, lease_expires_at = now() + make_interval(secs => $4::float8 / 1000),
           attempts = s.attempts + 1, updated_at = now()
      FROM picked
     WHERE s.id = picked.id AND coalesce(picked.contact_status, 'active') = 'active'
    RETURNING s.id, s.email, s.tracking_id, s.attempts, s.lease_expires_at
  )
  SELECT p.id, p.task_id AS "taskId", p.version, p.contact_status AS "contactStatus", l.id IS NOT NULL AS leased,
         l.email, l.tracking_id AS "trackingId", l.attempts AS attempt, l.lease_expires_at AS "leaseExpiresAt",
         p.name AS "contactName", p.attributes
    FROM picked p LEFT JOIN leased l ON l.id = p.id
   ORDER BY p.next_attempt_at, p.id`;

type PickedRow = LeasedSubTask & {
  version: number;
  contactStatus: string | null;
  leased: boolean;
  leaseExpiresAt: Date | null;
};

function toLeased(p: PickedRow): LeasedSubTask {
  const { id, taskId, email, trackingId, attempt, contactName, attributes } = p;
  return { id, taskId, email, trackingId, attempt, contactName, attributes };
}

/**
 * Picked sub-tasks of suppressed contacts end `skipped`, as webhook-ingest skips them when the
 * contact is first suppressed; left pending they would keep their task from ever completing.
 * Only a task none of whose sub-tasks this lease took may be done now (and its row is locked
 * only then): a leased one is open until its outcome, whose recording completes the task.
 */
async function skipSuppressed(
  tx: EntityManager,
  store: EventStore,
  suppressed: readonly PickedRow[],
  mayBeDone: boolean,
  meta: EventMetadata,
): Promise<void> {
  await store.append(
    tx,
    suppressed.map((p) => ({
      streamId: `subtask-${p.id}`,
      expectedVersion: p.version,
      events: [
        newEvent('SubTaskSkipped', {
          subTaskId: p.id,
          taskId: p.taskId,
          reason: `contact ${p.contactStatus}`,
        }),
      ],
    })),
    meta,
  );
  if (mayBeDone) await completeTasksIfDone(tx, store, [suppressed[0].taskId], meta);
}

/** Once per quota window, and only while work is waiting, the exhaustion is an event. */
async function noteQuotaExhausted(
  tx: EntityManager,
  store: EventStore,
  service: DispatchService,
  notedAt: Date | null,
  windowStart: Date,
  meta: EventMetadata,
): Promise<void> {
  if (notedAt && notedAt >= windowStart) return;
  const [waiting] = await tx.query(
    `SELECT 1 FROM tasks t WHERE t.status = 'sending' AND t.account_id = $2
        AND (cardinality(t.service_ids) = 0 OR $1::uuid = ANY (t.service_ids))
        AND EXISTS (SELECT 1 FROM sub_tasks p WHERE p.task_id = t.id AND p.status = 'pending') LIMIT 1`,
    [service.id, service.accountId],
  );
  if (!waiting) return;
  await tx.query(`UPDATE service_runtime SET quota_exhausted_at = clock_timestamp() WHERE service_id = $1`, [
    service.id,
  ]);
  await store.append(
    tx,
    [
      {
        streamId: `service-${service.id}`,
        expectedVersion: 'any',
        events: [
          newEvent('ServiceQuotaExhausted', {
            serviceId: service.id,
            quota: service.limits.dailyQuota ?? 0,
            resetsAt: new Date(windowStart.getTime() + 86_400_000).toISOString(),
          }),
        ],
      },
    ],
    meta,
  );
}

interface ServiceRow {
  id: string;
  account_id: string;
  name: string;
  provider: string;
  status: DispatchService['status'];
  frozen_until: Date | null;
  status_reason: string | null;
  pace: Pace;
  daily_quota: number | null;
  quota_reset_hour_utc: number;
  from_email: string;
  from_name: string | null;
  options: Record<string, unknown>;
  credentials_sealed: string | null;
  updated_at: Date;
  frozen_count: number;
}

export function toService(row: ServiceRow): DispatchService {
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    provider: row.provider,
    status: row.status,
    frozenUntil: row.frozen_until,
    statusReason: row.status_reason,
    limits: { pace: row.pace, dailyQuota: row.daily_quota, quotaResetHourUtc: row.quota_reset_hour_utc },
    fromEmail: row.from_email,
    fromName: row.from_name,
    options: row.options,
    credentialsSealed: row.credentials_sealed,
    updatedAt: row.updated_at,
    frozenCount: row.frozen_count,
  };
}
