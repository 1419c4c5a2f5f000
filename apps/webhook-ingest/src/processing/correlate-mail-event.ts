import { EntityManager } from 'typeorm';
import { SubTaskStatus } from '@edm/events';

export interface MailEventClues {
  trackingId: string | null;
  providerMessageIds: string[];
  headerMessageId: string | null;
  taskId: string | null;
  recipient: string | null;
  serviceId: string | null;
  accountId: string | null;
  occurredAt: Date;
}

export interface Correlation {
  subTaskId: string;
  taskId: string;
  /** The service that sent the matched sub-task (null if it was never leased). */
  serviceId: string | null;
  strategy: Strategy['name'];
}

interface Strategy {
  name:
    | 'tracking-id'
    | 'provider-message-id'
    | 'message-id-header'
    | 'task-and-recipient'
    | 'recipient-service-window';
  /** null: this event carries no clue for the strategy. */
  query(clues: MailEventClues, windowMs: number): { sql: string; params: unknown[] } | null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Matches stay inside the service's account when it is known. */
const ACCOUNT = `($ACCOUNT::uuid IS NULL OR account_id = $ACCOUNT::uuid)`;

/**
 * The five strategies of SPEC 3.3, in order. Each is one query served by an index (no substring
 * scans), and each runs in its own savepoint: an error in one is counted and the next still runs.
 */
export const STRATEGIES: readonly Strategy[] = [
  {
    name: 'tracking-id',
    query: (c) =>
      c.trackingId
        ? {
            sql: `SELECT id, task_id, service_id FROM sub_tasks WHERE tracking_id = $1 AND ${ACCOUNT}`,
            params: [c.trackingId],
          }
        : null,
  },
  {
    name: 'provider-message-id',
    query: (c) =>
      c.providerMessageIds.length
        ? {
            sql: `SELECT id, task_id, service_id FROM sub_tasks WHERE provider_message_id = ANY($1::text[]) AND ($2::text IS NULL OR email = $2) AND ${ACCOUNT}`,
            params: [c.providerMessageIds, c.recipient],
          }
        : null,
  },
  {
    // Our own Message-ID is <trackingId@domain>: an echo of it in the event's headers names the sub-task.
    name: 'message-id-header',
    query: (c) => {
      const local = c.headerMessageId?.replace(/^<|>$/g, '').split('@')[0];
      return local
        ? {
            sql: `SELECT id, task_id, service_id FROM sub_tasks WHERE tracking_id = $1 AND ${ACCOUNT}`,
            params: [local],
          }
        : null;
    },
  },
  {
    name: 'task-and-recipient',
    query: (c) =>
      c.taskId && UUID.test(c.taskId) && c.recipient
        ? {
            sql: `SELECT id, task_id, service_id FROM sub_tasks WHERE task_id = $1::uuid AND email = $2 AND ${ACCOUNT}`,
            params: [c.taskId, c.recipient],
          }
        : null,
  },
  {
    // The weakest clue: accepted only when exactly one sub-task fits.
    name: 'recipient-service-window',
    query: (c, windowMs) =>
      c.recipient && c.serviceId
        ? {
            sql: `SELECT id, task_id, service_id FROM sub_tasks
                   WHERE email = $1 AND service_id = $2 AND sent_at BETWEEN $3::timestamptz - make_interval(secs => $4::float8 / 1000) AND $3::timestamptz
                     AND ${ACCOUNT}`,
            params: [c.recipient, c.serviceId, c.occurredAt, windowMs],
          }
        : null,
  },
];

export async function correlate(
  tx: EntityManager,
  clues: MailEventClues,
  windowMs: number,
  onError: (strategy: string, error: unknown) => void,
  strategies: readonly Strategy[] = STRATEGIES,
): Promise<Correlation | null> {
  for (const strategy of strategies) {
    const q = strategy.query(clues, windowMs);
    if (!q) continue;
    const sql = q.sql.replace(/\$ACCOUNT/g, `$${q.params.length + 1}`);
    await tx.query('SAVEPOINT correlate');
    try {
      const rows: { id: string; task_id: string; service_id: string | null }[] = await tx.query(
        `${sql} LIMIT 2`,
        [...q.params, clues.accountId],
      );
      await tx.query('RELEASE SAVEPOINT correlate');
      if (rows.length === 1)
        return {
          subTaskId: rows[0].id,
          taskId: rows[0].task_id,
          serviceId: rows[0].service_id,
          strategy: strategy.name,
        };
    } catch (error) {
      await tx.query('ROLLBACK TO SAVEPOINT correlate');
      onError(strategy.name, error);
    }
  }
  return null;
}

/** A sub-task as the batch path locks it: enough to match an event and to move the sub-task. */
export interface LockedSubTask {
  id: string;
  task_id: string;
  service_id: string | null;
  account_id: string;
  tracking_id: string;
  contact_id: string | null;
  status: SubTaskStatus;
  version: number;
}

/**
 * The first strategy for a whole batch in one query, by the same rule: exactly one sub-task
 * carries the tracking id, inside the event's account when that is known. The sub-tasks are
 * locked (in id order) and returned, so that applying the events needs no second look. Matches
 * are keyed by the caller's key; events it cannot match are simply absent.
 */
export async function correlateByTrackingId(
  tx: EntityManager,
  events: readonly { key: string; trackingId: string; accountId: string | null }[],
): Promise<{ matches: Map<string, Correlation>; subTasks: Map<string, LockedSubTask> }> {
  const matches = new Map<string, Correlation>();
  if (events.length === 0) return { matches, subTasks: new Map() };
  const rows: LockedSubTask[] = await tx.query(
    `SELECT id, task_id, service_id, account_id, tracking_id, contact_id, status, version
       FROM sub_tasks WHERE tracking_id = ANY ($1::text[]) ORDER BY id FOR UPDATE`,
    [[...new Set(events.map((e) => e.trackingId))]],
  );
  for (const event of events) {
    const fits = rows.filter(
      (r) =>
        r.tracking_id === event.trackingId && (event.accountId === null || r.account_id === event.accountId),
    );
    if (fits.length === 1)
      matches.set(event.key, {
        subTaskId: fits[0].id,
        taskId: fits[0].task_id,
        serviceId: fits[0].service_id,
        strategy: 'tracking-id',
      });
  }
  return { matches, subTasks: new Map(rows.map((r) => [r.id, r])) };
}
