import { createHash } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { normaliseEmail } from '@edm/domain';
import { EVENT_MAX_BYTES, inPayloadParts, newEvent, NewEvent, SubTaskSeed } from '@edm/events';
import { EventStore, uuidv7 } from '@edm/event-store';
import { DomainError, FieldProblem } from '@edm/platform';
import { commandMetadata } from '../../../auth/command-metadata';
import { Principal } from '../../../auth/principal';
import { ContactsService } from '../../../contacts/contacts.service';
import { CreateTaskInput } from '../../tasks.schemas';

/** Sub-tasks per SubTasksMaterialised event at most (fewer where addresses are long: seedBytes). */
export const SUBTASK_CHUNK = 2_000;

/** A seed's bytes in its event: the address, and about 180 for the ids, status and keys. */
const seedBytes = (seed: SubTaskSeed) => 180 + Buffer.byteLength(seed.email);
/** What a SubTasksMaterialised event lists at most, with room for the rest of the event. */
export const SEEDS_MAX_BYTES = EVENT_MAX_BYTES - 64 * 1024;

/**
 * The seeds of SubTasksMaterialised events, in order: SUBTASK_CHUNK at most, fewer where the
 * recipients' addresses are long, so that every event stays small enough for the bus to carry.
 */
export function subTaskChunks(seeds: readonly SubTaskSeed[]): SubTaskSeed[][] {
  const chunks: SubTaskSeed[][] = [];
  for (let i = 0; i < seeds.length; i += SUBTASK_CHUNK)
    chunks.push(...inPayloadParts(seeds.slice(i, i + SUBTASK_CHUNK), seedBytes, SEEDS_MAX_BYTES));
  return chunks;
}

export interface CreateTaskResult {
  status: 201 | 200;
  body: { id: string; status: string; counts: { total: number; pending: number; skipped: number } };
}

/**
 * Creates a task: resolves its recipients, skips suppressed contacts, and materialises every
 * sub-task in one transaction with the TaskCreated event. With an Idempotency-Key, a retry gets
 * the first answer back; the same key with a different body is refused.
 */
@Injectable()
export class CreateTaskUseCase {
  constructor(
    private readonly dataSource: DataSource,
    private readonly store: EventStore,
    private readonly contacts: ContactsService,
  ) {}

  async execute(
    principal: Principal,
    input: CreateTaskInput,
    idempotencyKey?: string,
  ): Promise<CreateTaskResult> {
    if (idempotencyKey !== undefined && !/^[\x21-\x7e]{1,200}$/.test(idempotencyKey)) {
      throw new DomainError('VALIDATION_FAILED', 'Idempotency-Key must be 1-200 visible ASCII characters');
    }
    const requestHash = createHash('sha256').update(JSON.stringify(input)).digest('hex');
    // Recipients given as new addresses become contacts: a concurrent request adding the same
    // address wins the unique index, and this one runs again and finds it.
    return this.contacts.retryingUniqueRaces(() =>
      this.transaction(principal, input, requestHash, idempotencyKey),
    );
  }

  private transaction(
    principal: Principal,
    input: CreateTaskInput,
    requestHash: string,
    idempotencyKey: string | undefined,
  ): Promise<CreateTaskResult> {
    return this.dataSource.transaction(async (tx) => {
      if (idempotencyKey) {
        const replay = await this.claimKey(tx, principal.accountId, idempotencyKey, requestHash);
        if (replay) return replay;
      }
      const result = await this.create(tx, principal, input);
      if (idempotencyKey) {
        await tx.query(
          `UPDATE idempotency_keys SET status_code = 201, response = $3 WHERE account_id = $1 AND key = $2`,
          [principal.accountId, idempotencyKey, JSON.stringify(result.body)],
        );
      }
      return result;
    });
  }

  /** Claims the key, or returns the stored answer. A concurrent first request is waited for by the insert. */
  private async claimKey(
    tx: EntityManager,
    accountId: string,
    key: string,
    requestHash: string,
  ): Promise<CreateTaskResult | null> {
    const claimed: unknown[] = await tx.query(
      `INSERT INTO idempotency_keys (account_id, key, request_hash, status_code, response) VALUES ($1, $2, $3, 0, '{}')
       ON CONFLICT DO NOTHING RETURNING key`,
      [accountId, key, requestHash],
    );
    if (claimed.length) return null;
    const [stored] = await tx.query(
      `SELECT request_hash, response FROM idempotency_keys WHERE account_id = $1 AND key = $2`,
      [accountId, key],
    );
    if (stored.request_hash !== requestHash) {
      throw new DomainError(
        'IDEMPOTENCY_MISMATCH',
        'this Idempotency-Key was used with a different request body',
      );
    }
    return { status: 200, body: stored.response };
  }

  private async create(
    tx: EntityManager,
    principal: Principal,
    input: CreateTaskInput,
  ): Promise<CreateTaskResult> {
    const accountId = principal.accountId;
    const meta = commandMetadata(principal);
    const content = await this.content(tx, accountId, input);
    const serviceIds = await this.checkServices(tx, accountId, input.serviceIds ?? []);
    const recipients = await this.resolveRecipients(tx, principal, input.recipients, meta);
    if (recipients.length === 0) {
      throw new DomainError('VALIDATION_FAILED', 'no contact matches the recipients', [
        { field: 'recipients', message: 'matched no contact' },
      ]);
    }
    const seeds: SubTaskSeed[] = recipients.map((r) => ({
      id: uuidv7(),
      contactId: r.id,
      email: r.email,
      trackingId: uuidv7().replace(/-/g, ''),
      status: r.status === 'active' ? 'pending' : 'skipped',
    }));
    const skipped = seeds.filter((s) => s.status === 'skipped').length;
    const taskId = uuidv7();
    const scheduled = input.scheduledAt && Date.parse(input.scheduledAt) > Date.now();
    const events: NewEvent[] = [
      newEvent('TaskCreated', {
        taskId,
        accountId,
        name: input.name,
        ...content,
        serviceIds,
        priority: input.priority ?? 0,
        scheduledAt: input.scheduledAt ?? null,
        status: scheduled ? 'scheduled' : 'sending',
        total: seeds.length,
        skipped,
      }),
    ];
    subTaskChunks(seeds).forEach((subTasks, chunk) =>
      events.push(newEvent('SubTasksMaterialised', { taskId, accountId, chunk, subTasks })),
    );
    const nothingToSend = skipped === seeds.length;
    if (nothingToSend) events.push(newEvent('TaskCompleted', { taskId }));
    await this.store.append(tx, [{ streamId: `task-${taskId}`, expectedVersion: 'no_stream', events }], meta);
    return {
      status: 201,
      body: {
        id: taskId,
        status: nothingToSend ? 'completed' : scheduled ? 'scheduled' : 'sending',
        counts: { total: seeds.length, pending: seeds.length - skipped, skipped },
      },
    };
  }

  private async content(tx: EntityManager, accountId: string, input: CreateTaskInput) {
    if (!input.templateId) {
      return {
        subject: input.subject!,
        html: input.html ?? null,
        text: input.text ?? null,
        templateId: null,
      };
    }
    const [template] = await tx.query(
      `SELECT subject, html, text FROM templates WHERE id = $1 AND account_id = $2`,
      [input.templateId, accountId],
    );
    if (!template)
      throw new DomainError('VALIDATION_FAILED', 'unknown template', [
        { field: 'templateId', message: 'no such template' },
      ]);
    return {
      subject: input.subject ?? template.subject,
      html: input.html ?? template.html,
      text: input.text ?? template.text,
      templateId: input.templateId,
    };
  }

  private async checkServices(tx: EntityManager, accountId: string, ids: string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const found: { id: string }[] = await tx.query(
      `SELECT id FROM sending_services WHERE account_id = $1 AND id = ANY($2::uuid[])`,
      [accountId, ids],
    );
    const known = new Set(found.map((f) => f.id));
    const problems = ids.flatMap((id, i) =>
      known.has(id) ? [] : [{ field: `serviceIds.${i}`, message: 'no such service' }],
    );
    if (problems.length) throw new DomainError('VALIDATION_FAILED', 'unknown services', problems);
    return [...known];
  }

  private async resolveRecipients(
    tx: EntityManager,
    principal: Principal,
    recipients: CreateTaskInput['recipients'],
    meta: ReturnType<typeof commandMetadata>,
  ): Promise<{ id: string; email: string; status: string }[]> {
    const problems: FieldProblem[] = [];
    const emails = (recipients.emails ?? []).map((raw, i) => {
      const email = normaliseEmail(raw);
      if (!email) problems.push({ field: `recipients.emails.${i}`, message: 'not a valid email address' });
      return email;
    });
    if (problems.length)
      throw new DomainError('VALIDATION_FAILED', 'some recipients are not valid', problems.slice(0, 50));
    const byEmail = emails.length
      ? (
          await this.contacts.upsertIn(
            tx,
            principal.accountId,
            [...new Set(emails as string[])].map((email) => ({
              email,
              name: null,
              attributes: {},
              tags: [],
            })),
            meta,
          )
        ).ids
      : [];
    const contactIds = [...new Set([...(recipients.contactIds ?? []), ...byEmail])];
    const rows: { id: string; email: string; status: string }[] = await tx.query(
      `SELECT id, email, status FROM contacts
        WHERE account_id = $1 AND (id = ANY($2::uuid[]) OR tags && $3::text[])
        ORDER BY id`,
      [principal.accountId, contactIds, recipients.tags ?? []],
    );
    if (recipients.contactIds?.length) {
      const found = new Set(rows.map((r) => r.id));
      const unknown = recipients.contactIds.flatMap((id, i) =>
        found.has(id) ? [] : [{ field: `recipients.contactIds.${i}`, message: 'no such contact' }],
      );
      if (unknown.length)
        throw new DomainError('VALIDATION_FAILED', 'unknown contacts', unknown.slice(0, 50));
    }
    return rows;
  }
}
