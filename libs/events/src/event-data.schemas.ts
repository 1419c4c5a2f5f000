import { z } from 'zod';

/**
 * Data of every domain event, by type. The TypeScript union and the runtime validation of NATS
 * payloads both come from this one table, so they cannot drift apart.
 */
const id = z.string().uuid();
const isoDate = z.string().datetime({ offset: true });

export const subTaskStatuses = [
  'pending',
  'allocated',
  'sending',
  'sent',
  'delivered',
  'opened',
  'clicked',
  'bounced',
  'complained',
  'unsubscribed',
  'failed',
  'unknown',
  'skipped',
  'cancelled',
] as const;
export const subTaskStatus = z.enum(subTaskStatuses);
export type SubTaskStatus = z.infer<typeof subTaskStatus>;

/** Statuses a sub-task can only reach after its mail was sent (a provider's event says so). */
export const AFTER_SENT: readonly SubTaskStatus[] = [
  'sent',
  'delivered',
  'opened',
  'clicked',
  'bounced',
  'complained',
  'unsubscribed',
];

export const taskStatus = z.enum(['scheduled', 'sending', 'paused', 'completed', 'cancelled']);
export type TaskStatus = z.infer<typeof taskStatus>;

export const serviceStatus = z.enum(['active', 'frozen', 'disabled']);
export const contactStatus = z.enum(['active', 'bounced', 'complained', 'unsubscribed']);

export const pace = z.union([
  z.object({ intervalMs: z.number().int().min(0).max(86_400_000) }).strict(),
  z
    .object({
      perSecond: z.number().positive().max(10_000),
      burst: z.number().int().min(1).max(10_000).optional(),
    })
    .strict(),
]);
export type Pace = z.infer<typeof pace>;

const address = z.object({ email: z.string(), name: z.string().optional() });

const serviceSettings = {
  name: z.string(),
  from: address,
  pace,
  dailyQuota: z.number().int().positive().nullable(),
  quotaResetHourUtc: z.number().int().min(0).max(23),
  options: z.record(z.string(), z.unknown()),
  /** AES-256-GCM ciphertext of the credentials; the plain text never enters an event. */
  credentialsSealed: z.string().nullable(),
};

const subTaskSeed = z.object({
  id,
  contactId: id.nullable(),
  email: z.string(),
  trackingId: z.string(),
  status: z.enum(['pending', 'skipped']),
});
export type SubTaskSeed = z.infer<typeof subTaskSeed>;

const subTaskRef = { subTaskId: id, taskId: id };

/** What is recorded of one provider event once it is correlated (or given up on). */
const mailEventRecord = z.object({
  mailEventId: id,
  eventLogId: id,
  provider: z.string(),
  serviceId: id.nullable(),
  type: z.string().nullable(),
  rawType: z.string(),
  matchStatus: z.enum(['matched', 'unmatched']),
  matchStrategy: z.string().nullable(),
  subTaskId: id.nullable(),
  taskId: id.nullable(),
  occurredAt: isoDate,
});

export const eventDataSchemas = {
  AccountCreated: z.object({ accountId: id, name: z.string() }),
  ApiKeyIssued: z.object({
    keyId: id,
    accountId: id.nullable(),
    role: z.enum(['admin', 'account']),
    keyHash: z.string(),
    prefix: z.string(),
    label: z.string(),
  }),
  ApiKeyRevoked: z.object({ keyId: id }),

  ServiceCreated: z.object({ serviceId: id, accountId: id, provider: z.string(), ...serviceSettings }),
  ServiceUpdated: z.object({ serviceId: id, changes: z.object(serviceSettings).partial() }),
  ServiceFrozen: z.object({ serviceId: id, reason: z.string(), until: isoDate.nullable() }),
  ServiceUnfrozen: z.object({ serviceId: id, reason: z.string() }),
  ServiceDisabled: z.object({ serviceId: id, reason: z.string() }),
  ServiceEnabled: z.object({ serviceId: id }),
  ServiceQuotaExhausted: z.object({ serviceId: id, quota: z.number().int(), resetsAt: isoDate }),

  ContactUpserted: z.object({
    contactId: id,
    accountId: id,
    email: z.string(),
    name: z.string().nullable(),
    attributes: z.record(z.string(), z.unknown()),
    tags: z.array(z.string()),
  }),
  ContactSuppressed: z.object({ contactId: id, status: contactStatus, reason: z.string() }),
  /** `subTaskId`: the mail that soft-bounced (each mail counts once); absent in events recorded before it was. */
  ContactSoftBounced: z.object({ contactId: id, softBounces: z.number().int(), subTaskId: id.optional() }),

  TemplateCreated: z.object({
    templateId: id,
    accountId: id,
    name: z.string(),
    subject: z.string(),
    html: z.string().nullable(),
    text: z.string().nullable(),
  }),
  TemplateUpdated: z.object({
    templateId: id,
    changes: z
      .object({
        name: z.string(),
        subject: z.string(),
        html: z.string().nullable(),
        text: z.string().nullable(),
      })
      .partial(),
  }),

  TaskCreated: z.object({
    taskId: id,
    accountId: id,
    name: z.string(),
    subject: z.string(),
    html: z.string().nullable(),
    text: z.string().nullable(),
    templateId: id.nullable(),
    serviceIds: z.array(id),
    priority: z.number().int(),
    scheduledAt: isoDate.nullable(),
    status: z.enum(['scheduled', 'sending']),
    total: z.number().int(),
    skipped: z.number().int(),
  }),
  /** Sub-tasks are materialised in chunks so that no single event outgrows a NATS message. */
  SubTasksMaterialised: z.object({
    taskId: id,
    accountId: id,
    chunk: z.number().int(),
    subTasks: z.array(subTaskSeed),
  }),
  TaskStarted: z.object({ taskId: id }),
  TaskPaused: z.object({ taskId: id }),
  TaskResumed: z.object({ taskId: id }),
  TaskCancelled: z.object({ taskId: id, cancelledSubTasks: z.number().int() }),
  TaskCompleted: z.object({ taskId: id }),
  /** An operator's repair changed something; the dispatcher wakes on it. */
  TaskRepaired: z.object({
    taskId: id,
    releasedLeases: z.number().int(),
    retriedWebhookEvents: z.number().int(),
  }),

  /**
   * One lease: a batch of one task's sub-tasks taken by a service and marked `sending` at once
   * (from here a lost outcome is `unknown`). One event per batch, in a stream of its own
   * (`lease-<uuid>`), so a mail's lease costs a share of one row rather than two rows in its
   * sub-task's stream; the sub-tasks' own streams, and their versions, are not touched.
   * Published on SubTaskLeased's subject, `edm.subtask.leased`.
   */
  SubTaskBatchLeased: z.object({
    taskId: id,
    serviceId: id,
    leaseOwner: z.string(),
    leaseExpiresAt: isoDate,
    subTasks: z.array(z.object({ subTaskId: id, attempt: z.number().int() })).min(1),
  }),
  /** A lease of one sub-task, as appended before SubTaskBatchLeased; still applied by a rebuild. */
  SubTaskLeased: z.object({
    ...subTaskRef,
    serviceId: id,
    leaseOwner: z.string(),
    leaseExpiresAt: isoDate,
    attempt: z.number().int(),
  }),
  /**
   * The request to the provider is about to start: from here a lost outcome is `unknown`. As
   * appended with SubTaskLeased, before SubTaskBatchLeased; still applied by a rebuild.
   */
  SubTaskSending: z.object({ ...subTaskRef, serviceId: id }),
  /**
   * Sends the provider accepted, recorded together: one event per task in a batch of outcomes, in
   * a stream of its own (`sends-<uuid>`), like SubTaskBatchLeased. Published on SubTaskSent's
   * subject, `edm.subtask.sent`.
   */
  SubTaskBatchSent: z.object({
    taskId: id,
    serviceId: id,
    sent: z
      .array(z.object({ subTaskId: id, providerMessageId: z.string().nullable(), sentAt: isoDate }))
      .min(1),
  }),
  /**
   * One accepted send, as recorded before SubTaskBatchSent; still applied by a rebuild. The
   * dispatcher's outcome of a send is still described with this type before it is recorded.
   */
  SubTaskSent: z.object({
    ...subTaskRef,
    serviceId: id,
    providerMessageId: z.string().nullable(),
    sentAt: isoDate,
  }),
  SubTaskRetryScheduled: z.object({
    ...subTaskRef,
    serviceId: id,
    reason: z.string(),
    nextAttemptAt: isoDate,
  }),
  SubTaskFailed: z.object({ ...subTaskRef, serviceId: id.nullable(), reason: z.string() }),
  SubTaskUnknown: z.object({ ...subTaskRef, serviceId: id, reason: z.string() }),
  /** Back to pending without counting an attempt: lease expired before sending, account error, shutdown. */
  SubTaskReleased: z.object({ ...subTaskRef, reason: z.string(), attempts: z.number().int() }),
  SubTaskSkipped: z.object({ ...subTaskRef, reason: z.string() }),
  SubTaskCancelled: z.object({ ...subTaskRef }),
  SubTaskProgressed: z.object({
    ...subTaskRef,
    from: subTaskStatus,
    to: subTaskStatus,
    mailEvent: z.string(),
    eventLogId: id,
    occurredAt: isoDate,
  }),

  /**
   * One provider event recorded and correlated (or given up on), published as `edm.mail.<type>`.
   * As appended before MailEventsRecorded; still read by the monitor.
   */
  MailEventRecorded: mailEventRecord,
  /**
   * Provider events of one normalised type recorded together: one event per type in a batch that
   * webhook-ingest settled in one transaction, in a stream of its own (`mail-events-<uuid>`), so
   * that an event costs a share of one row and one published message rather than its own.
   * Published on the same subject as MailEventRecorded, `edm.mail.<type>`, from `data.type`.
   */
  MailEventsRecorded: z.object({
    type: z.string().nullable(),
    events: z.array(mailEventRecord.omit({ type: true })).min(1),
  }),

  AlertRaised: z.object({
    alertId: id,
    kind: z.string(),
    subject: z.string(),
    accountId: id.nullable(),
    severity: z.enum(['info', 'warning', 'critical']),
    message: z.string(),
    details: z.record(z.string(), z.unknown()),
  }),
  AlertResolved: z.object({ alertId: id, kind: z.string(), subject: z.string() }),
  AlertAcknowledged: z.object({ alertId: id, by: z.string() }),
} as const;

export type EventDataSchemas = typeof eventDataSchemas;
export type EventType = keyof EventDataSchemas;
export type EventData<T extends EventType> = z.infer<EventDataSchemas[T]>;
