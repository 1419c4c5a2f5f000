import { EntityManager } from 'typeorm';
import { NamedStatement, queryNamed } from '@edm/persistence';

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
  /** The event's clue for this strategy, as the values of `columns`; null: it carries none. */
  clue(clues: MailEventClues, windowMs: number): Record<string, unknown> | null;
  /** The clue's columns, as `jsonb_to_recordset` reads them (`c.<name>` in `where`). */
  columns: string;
  /** Which sub-tasks fit the clue `c`. */
  where: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * How far a provider event may be dated before the send we recorded for its mail. Our `sent_at`
 * is when the provider's answer reached us (up to DISPATCH_SEND_TIMEOUT_MS after it took the
 * mail), and its clock is not ours: an `accepted` or even a `delivered` event can be dated
 * seconds before it. Without this margin the fifth strategy left that send out of its window, and
 * an older mail to the same recipient from the same service, the only one left, took the event.
 */
export const SEND_CLOCK_SKEW_MS = 300_000;

/**
 * The five strategies of SPEC 3.3, in order. Each is one lookup per event served by an index (no
 * substring scans), made for a whole batch of events in one statement, and each runs in its own
 * savepoint: an error in one is counted and the next still runs.
 */
export const STRATEGIES: readonly Strategy[] = [
  {
    name: 'tracking-id',
    clue: (c) => (c.trackingId ? { tracking: c.trackingId } : null),
    columns: 'tracking text',
    where: 'tracking_id = c.tracking',
  },
  {
    name: 'provider-message-id',
    clue: (c) => (c.providerMessageIds.length ? { ids: c.providerMessageIds, recipient: c.recipient } : null),
    columns: 'ids text[], recipient text',
    where: 'provider_message_id = ANY (c.ids) AND (c.recipient IS NULL OR email = c.recipient)',
  },
  {
    // Our own Message-ID is <trackingId@domain>: an echo of it in the event's headers names the sub-task.
    name: 'message-id-header',
    clue: (c) => {
      const local = c.headerMessageId?.replace(/^<|>$/g, '').split('@')[0];
      return local ? { tracking: local } : null;
    },
    columns: 'tracking text',
    where: 'tracking_id = c.tracking',
  },
  {
    name: 'task-and-recipient',
    clue: (c) =>
      c.taskId && UUID.test(c.taskId) && c.recipient ? { task: c.taskId, recipient: c.recipient } : null,
    columns: 'task uuid, recipient text',
    where: 'task_id = c.task AND email = c.recipient',
  },
  {
    // The weakest clue: accepted only when exactly one sub-task fits.
    name: 'recipient-service-window',
    clue: (c, windowMs) =>
      c.recipient && c.serviceId && !Number.isNaN(c.occurredAt.getTime())
        ? {
            recipient: c.recipient,
            service: c.serviceId,
            since: new Date(c.occurredAt.getTime() - windowMs).toISOString(),
            until: new Date(c.occurredAt.getTime() + SEND_CLOCK_SKEW_MS).toISOString(),
          }
        : null,
    columns: 'recipient text, service uuid, since timestamptz, until timestamptz',
    where: 'email = c.recipient AND service_id = c.service AND sent_at BETWEEN c.since AND c.until',
  },
];

/**
 * A strategy's lookup for a batch: `$1` is a JSON array of the events' clues, each with its `key`
 * and `account`; at most two fitting sub-tasks per event come back, keyed.
 */
export const strategyStatement = (strategy: Strategy): string =>
  `SELECT c.key, s.id, s.task_id, s.service_id
     FROM jsonb_to_recordset($1::jsonb) AS c(key text, account uuid, ${strategy.columns})
    CROSS JOIN LATERAL (
      SELECT id, task_id, service_id FROM sub_tasks
       WHERE ${strategy.where} AND (c.account IS NULL OR account_id = c.account)
       LIMIT 2) s`;

/** Each strategy's statement, named (prepared once per connection). */
const named = new WeakMap<Strategy, NamedStatement>();

function namedStatementOf(strategy: Strategy): NamedStatement {
  let statement = named.get(strategy);
  if (!statement) named.set(strategy, (statement = new NamedStatement(strategyStatement(strategy))));
  return statement;
}

/**
 * Matches a batch of events, each to the one sub-task its first conclusive clue names: the
 * strategies in order, each in one statement for every event it has a clue for and that no
 * earlier one matched. A match needs exactly one fitting sub-task, inside the event's account when
 * that is known. Events nothing matched are absent from the result.
 *
 * With `onError`, each strategy runs in a savepoint of its own: one that fails is rolled back to
 * it and reported (with the keys it was looking for), and the next one still runs. Without, no
 * savepoint is taken (two round trips fewer per strategy) and a failure is thrown, failing the
 * caller's transaction: for a caller whose fallback matches the same events with `onError`.
 */
export async function correlateAll(
  tx: EntityManager,
  events: readonly { key: string; clues: MailEventClues }[],
  windowMs: number,
  onError?: (strategy: string, error: unknown, keys: string[]) => void,
  strategies: readonly Strategy[] = STRATEGIES,
): Promise<Map<string, Correlation>> {
  const matches = new Map<string, Correlation>();
  for (const strategy of strategies) {
    // An event seen twice in a batch (same key) is asked for once: its two rows would read as
    // two fitting sub-tasks.
    const keys = new Set<string>();
    const asked = events.flatMap(({ key, clues }) => {
      if (matches.has(key) || keys.has(key)) return [];
      const clue = strategy.clue(clues, windowMs);
      if (!clue) return [];
      keys.add(key);
      return [{ ...clue, key, account: clues.accountId }];
    });
    if (asked.length === 0) continue;
    if (onError) await tx.query('SAVEPOINT correlate');
    try {
      const { rows } = await queryNamed<{
        key: string;
        id: string;
        task_id: string;
        service_id: string | null;
      }>(tx, namedStatementOf(strategy), [JSON.stringify(asked)]);
      if (onError) await tx.query('RELEASE SAVEPOINT correlate');
      const found = new Map<string, typeof rows>();
      for (const row of rows) found.set(row.key, [...(found.get(row.key) ?? []), row]);
      for (const [key, fits] of found)
        if (fits.length === 1)
          matches.set(key, {
            subTaskId: fits[0].id,
            taskId: fits[0].task_id,
            serviceId: fits[0].service_id,
            strategy: strategy.name,
          });
    } catch (error) {
      if (!onError) throw error;
      await tx.query('ROLLBACK TO SAVEPOINT correlate');
      onError(
        strategy.name,
        error,
        asked.map((a) => a.key),
      );
    }
  }
  return matches;
}
