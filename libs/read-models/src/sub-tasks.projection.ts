import { EntityManager } from 'typeorm';
import { DomainEvent, EventType } from '@edm/events';
import { impliedSteps } from '@edm/domain';
import { Projection } from '@edm/event-store';
import { NamedStatement, queryNamed } from '@edm/persistence';

type SubTaskEvent = Exclude<
  Extract<DomainEvent, { type: `SubTask${string}` }>,
  { type: 'SubTasksMaterialised' | 'SubTaskBatchLeased' | 'SubTaskBatchSent' }
>;

/** Forward only: a webhook may have moved the sub-task past `sent` before the send was recorded. */
const SENT_STATUS = `CASE WHEN s.status IN ('allocated', 'sending', 'unknown') THEN 'sent' ELSE s.status END`;

/**
 * One bulk statement per event type: each sets the row exactly as the live path left it, so a
 * rebuild from events equals the original. Columns common to all: version and updated_at.
 */
const UPDATES: Partial<
  Record<EventType, { set: string; columns: (e: SubTaskEvent) => unknown[]; types: string[] }>
> = {
  // SubTaskBatchLeased and SubTaskBatchSent (one event per batch) are applied by applyBatch below.
  SubTaskLeased: {
    set: `status = 'allocated', service_id = u.c1::uuid, lease_owner = u.c2, lease_expires_at = u.c3::timestamptz, attempts = u.c4::int`,
    columns: (e) => {
      const d = (e as DomainEvent<'SubTaskLeased'>).data;
      return [d.serviceId, d.leaseOwner, d.leaseExpiresAt, d.attempt];
    },
    types: ['text', 'text', 'text', 'text'],
  },
  SubTaskSending: { set: `status = 'sending'`, columns: () => [], types: [] },
  SubTaskSent: {
    set: `status = ${SENT_STATUS},
          provider_message_id = u.c1, sent_at = u.c2::timestamptz, lease_owner = NULL, lease_expires_at = NULL, last_error = NULL`,
    columns: (e) => {
      const d = (e as DomainEvent<'SubTaskSent'>).data;
      return [d.providerMessageId, d.sentAt];
    },
    types: ['text', 'text'],
  },
  SubTaskRetryScheduled: {
    set: `status = 'pending', next_attempt_at = u.c1::timestamptz, last_error = u.c2, service_id = NULL, lease_owner = NULL, lease_expires_at = NULL`,
    columns: (e) => {
      const d = (e as DomainEvent<'SubTaskRetryScheduled'>).data;
      return [d.nextAttemptAt, d.reason];
    },
    types: ['text', 'text'],
  },
  SubTaskReleased: {
    set: `status = 'pending', attempts = u.c1::int, last_error = u.c2, service_id = NULL, lease_owner = NULL, lease_expires_at = NULL`,
    columns: (e) => {
      const d = (e as DomainEvent<'SubTaskReleased'>).data;
      return [d.attempts, d.reason];
    },
    types: ['text', 'text'],
  },
  SubTaskFailed: {
    set: `status = 'failed', last_error = u.c1, lease_owner = NULL, lease_expires_at = NULL`,
    columns: (e) => [(e as DomainEvent<'SubTaskFailed'>).data.reason],
    types: ['text'],
  },
  SubTaskUnknown: {
    set: `status = 'unknown', last_error = u.c1, lease_owner = NULL, lease_expires_at = NULL`,
    columns: (e) => [(e as DomainEvent<'SubTaskUnknown'>).data.reason],
    types: ['text'],
  },
  SubTaskSkipped: {
    set: `status = 'skipped', last_error = u.c1`,
    columns: (e) => [(e as DomainEvent<'SubTaskSkipped'>).data.reason],
    types: ['text'],
  },
  SubTaskProgressed: {
    set: `status = u.c1, sent_at = coalesce(s.sent_at, u.c2::timestamptz),
          delivered_at = CASE WHEN u.c3::boolean THEN coalesce(s.delivered_at, u.c2::timestamptz) ELSE s.delivered_at END,
          opened_at = CASE WHEN u.c4::boolean THEN coalesce(s.opened_at, u.c2::timestamptz) ELSE s.opened_at END,
          clicked_at = CASE WHEN u.c5::boolean THEN coalesce(s.clicked_at, u.c2::timestamptz) ELSE s.clicked_at END,
          lease_owner = NULL, lease_expires_at = NULL`,
    columns: (e) => {
      const d = (e as DomainEvent<'SubTaskProgressed'>).data;
      const steps: string[] = impliedSteps(d.to);
      return [
        d.to,
        d.occurredAt,
        steps.includes('delivered'),
        steps.includes('opened'),
        steps.includes('clicked'),
      ];
    },
    types: ['text', 'text', 'text', 'text', 'text'],
  },
  SubTaskCancelled: {
    set: `status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL`,
    columns: () => [],
    types: [],
  },
};

/** The statement of each type in UPDATES, built on first use. */
const runStatements = new Map<EventType, NamedStatement>();

function runStatement(type: EventType, update: NonNullable<(typeof UPDATES)[EventType]>): NamedStatement {
  let statement = runStatements.get(type);
  if (statement) return statement;
  const extra = update.types.map((_, i) => `c${i + 1}`);
  const arrays = [
    '$1::uuid[]',
    '$2::int[]',
    '$3::timestamptz[]',
    ...update.types.map((t, i) => `$${i + 4}::${t}[]`),
  ];
  statement = new NamedStatement(
    `UPDATE sub_tasks s SET ${update.set}, version = u.version, updated_at = u.at
       FROM unnest(${arrays.join(', ')}) AS u(id, version, at${extra.map((c) => `, ${c}`).join('')})
      WHERE s.id = u.id`,
  );
  runStatements.set(type, statement);
  return statement;
}

async function applyRun(tx: EntityManager, type: EventType, run: SubTaskEvent[]): Promise<void> {
  const update = UPDATES[type];
  if (!update) return;
  const params: unknown[] = [
    run.map((e) => e.data.subTaskId),
    run.map((e) => e.version),
    run.map((e) => e.occurredAt),
  ];
  update.types.forEach((_, i) => params.push(run.map((e) => update.columns(e)[i])));
  await queryNamed(tx, runStatement(type, update), params);
}

const APPLY_BATCH_LEASED = new NamedStatement(
  `UPDATE sub_tasks s SET status = 'sending', service_id = $2, lease_owner = $3, lease_expires_at = $4,
          attempts = u.attempt, updated_at = $5
     FROM unnest($1::uuid[], $6::int[]) AS u(id, attempt)
    WHERE s.id = u.id`,
);

const APPLY_BATCH_SENT = new NamedStatement(
  `UPDATE sub_tasks s SET status = ${SENT_STATUS}, provider_message_id = u.message_id, sent_at = u.sent_at,
          lease_owner = NULL, lease_expires_at = NULL, last_error = NULL, updated_at = $4
     FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS u(id, message_id, sent_at)
    WHERE s.id = u.id`,
);

type BatchEvent = DomainEvent<'SubTaskBatchLeased'> | DomainEvent<'SubTaskBatchSent'>;

/**
 * A batch event, as the live path left its rows: a lease as the dispatcher's leasing statement
 * did (`sending`, with the service, owner, expiry and attempt), sends as SubTaskSent would. The
 * sub-tasks' versions count their own streams' events, which a batch event does not add to, so
 * they stay as they are.
 */
async function applyBatch(tx: EntityManager, event: BatchEvent): Promise<void> {
  if (event.type === 'SubTaskBatchLeased') {
    const d = event.data;
    await queryNamed(tx, APPLY_BATCH_LEASED, [
      d.subTasks.map((s) => s.subTaskId),
      d.serviceId,
      d.leaseOwner,
      d.leaseExpiresAt,
      event.occurredAt,
      d.subTasks.map((s) => s.attempt),
    ]);
    return;
  }
  const sent = event.data.sent;
  await queryNamed(tx, APPLY_BATCH_SENT, [
    sent.map((s) => s.subTaskId),
    sent.map((s) => s.providerMessageId),
    sent.map((s) => s.sentAt),
    event.occurredAt,
  ]);
}

export const SUB_TASK_EVENT_TYPES = [
  ...Object.keys(UPDATES),
  'SubTaskBatchLeased',
  'SubTaskBatchSent',
] as EventType[];

export const subTasksProjection: Projection = {
  name: 'sub-tasks',
  tables: ['sub_tasks'],
  handles: SUB_TASK_EVENT_TYPES,
  async apply(tx: EntityManager, events: readonly DomainEvent[]) {
    // Consecutive events of one type go in one statement, and order is kept. An UPDATE … FROM
    // applies only one row per target, so a sub-task met twice starts a new statement.
    let run: SubTaskEvent[] = [];
    let ids = new Set<string>();
    for (const event of events as (SubTaskEvent | BatchEvent)[]) {
      if (event.type === 'SubTaskBatchLeased' || event.type === 'SubTaskBatchSent') {
        if (run.length) await applyRun(tx, run[0].type, run);
        run = [];
        ids = new Set();
        await applyBatch(tx, event);
        continue;
      }
      if (run.length && (run[0].type !== event.type || ids.has(event.data.subTaskId))) {
        await applyRun(tx, run[0].type, run);
        run = [];
        ids = new Set();
      }
      run.push(event);
      ids.add(event.data.subTaskId);
    }
    if (run.length) await applyRun(tx, run[0].type, run);
  },
};
