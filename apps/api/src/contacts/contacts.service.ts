import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { normaliseEmail } from '@edm/domain';
import { EventMetadata, newEvent } from '@edm/events';
import { ConcurrencyError, EventStore, retryOnConflict, StreamAppend, uuidv7 } from '@edm/event-store';
import { DomainError, FieldProblem } from '@edm/platform';
import { PG_UNIQUE_VIOLATION, pgErrorCode } from '@edm/persistence';
import { commandMetadata } from '../auth/command-metadata';
import { Principal } from '../auth/principal';
import { ContactInput, ListContactsQuery } from './contacts.schemas';
import { parseCsv } from './csv';

interface MergedContact {
  email: string;
  name: string | null;
  attributes: Record<string, unknown>;
  tags: string[];
}

interface ExistingContact extends MergedContact {
  id: string;
  version: number;
}

/** Contacts: one per mailbox and account. A known address is merged, never duplicated. */
@Injectable()
export class ContactsService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly store: EventStore,
  ) {}

  async upsert(principal: Principal, inputs: readonly ContactInput[]) {
    const problems: FieldProblem[] = [];
    const merged = new Map<string, MergedContact>();
    inputs.forEach((input, index) => {
      const email = normaliseEmail(input.email);
      if (!email) {
        problems.push({ field: `contacts.${index}.email`, message: 'not a valid email address' });
        return;
      }
      merged.set(email, mergeInto(merged.get(email), input, email));
    });
    if (problems.length)
      throw new DomainError('VALIDATION_FAILED', 'some contacts are not valid', problems.slice(0, 50));
    return this.retryingUniqueRaces(() =>
      this.dataSource.transaction((tx) =>
        this.upsertIn(tx, principal.accountId, [...merged.values()], commandMetadata(principal)),
      ),
    );
  }

  /** Also used by task creation for recipients given as bare addresses. */
  async upsertIn(
    tx: EntityManager,
    accountId: string,
    contacts: readonly MergedContact[],
    meta: EventMetadata,
  ) {
    const existing = new Map<string, ExistingContact>(
      (
        await tx.query(
          `SELECT c.id, c.email, c.name, c.attributes, c.tags,
                  (SELECT coalesce(max(e.version), 0) FROM events e WHERE e.stream_id = 'contact-' || c.id) AS version
             FROM contacts c WHERE c.account_id = $1 AND c.email = ANY($2::text[]) FOR UPDATE`,
          [accountId, contacts.map((c) => c.email)],
        )
      ).map((row: ExistingContact) => [row.email, row]),
    );
    const appends: StreamAppend[] = [];
    const ids: string[] = [];
    let created = 0;
    let updated = 0;
    for (const contact of contacts) {
      const old = existing.get(contact.email);
      const next = old ? mergeInto(old, contact, contact.email) : contact;
      const contactId = old?.id ?? uuidv7();
      ids.push(contactId);
      if (old && sameContact(old, next)) continue;
      if (old) updated += 1;
      else created += 1;
      appends.push({
        streamId: `contact-${contactId}`,
        expectedVersion: old ? Number(old.version) : 'no_stream',
        events: [
          newEvent('ContactUpserted', {
            contactId,
            accountId,
            email: next.email,
            name: next.name,
            attributes: next.attributes,
            tags: next.tags,
          }),
        ],
      });
    }
    await this.store.append(tx, appends, meta);
    return { created, updated, unchanged: contacts.length - created - updated, ids };
  }

  async importCsv(principal: Principal, body: unknown) {
    if (typeof body !== 'string' || body.trim() === '') {
      throw new DomainError(
        'VALIDATION_FAILED',
        'send the CSV as the request body with Content-Type: text/csv',
      );
    }
    let rows: string[][];
    try {
      rows = parseCsv(body);
    } catch (error) {
      throw new DomainError('VALIDATION_FAILED', `CSV is malformed: ${(error as Error).message}`);
    }
    const [header, ...records] = rows;
    const columns = header.map((h) => h.trim().toLowerCase());
    const emailAt = columns.indexOf('email');
    if (emailAt < 0)
      throw new DomainError('VALIDATION_FAILED', 'the header row needs an "email" column', [
        { field: 'email', message: 'missing column' },
      ]);
    if (records.length > 100_000)
      throw new DomainError('VALIDATION_FAILED', 'at most 100,000 rows per import');
    const inputs: ContactInput[] = records.map((cells) => {
      const attributes: Record<string, string> = {};
      let name: string | undefined;
      let tags: string[] | undefined;
      columns.forEach((column, i) => {
        const value = (cells[i] ?? '').trim();
        if (i === emailAt || value === '') return;
        if (column === 'name') name = value;
        else if (column === 'tags')
          tags = value
            .split(/[;|]/)
            .map((t) => t.trim())
            .filter(Boolean);
        else attributes[header[i].trim()] = value;
      });
      return { email: cells[emailAt] ?? '', name, tags, attributes };
    });
    const result = { created: 0, updated: 0, unchanged: 0, ids: [] as string[] };
    for (let i = 0; i < inputs.length; i += 10_000) {
      const part = await this.upsert(principal, inputs.slice(i, i + 10_000));
      result.created += part.created;
      result.updated += part.updated;
      result.unchanged += part.unchanged;
      result.ids.push(...part.ids);
    }
    return { ...result, rows: inputs.length };
  }

  async list(principal: Principal, query: ListContactsQuery) {
    const items = await this.dataSource.query(
      `SELECT id, email, name, attributes, tags, status, soft_bounces AS "softBounces", created_at AS "createdAt", updated_at AS "updatedAt"
         FROM contacts
        WHERE account_id = $1 AND ($2::text IS NULL OR $2 = ANY(tags)) AND ($3::text IS NULL OR status = $3)
          AND ($4::text IS NULL OR email = $4) AND ($5::uuid IS NULL OR id > $5)
        ORDER BY id LIMIT $6`,
      [
        principal.accountId,
        query.tag ?? null,
        query.status ?? null,
        query.email ? (normaliseEmail(query.email) ?? query.email) : null,
        query.cursor ?? null,
        query.limit,
      ],
    );
    return { items, nextCursor: items.length === query.limit ? items[items.length - 1].id : null };
  }

  /**
   * Two requests creating the same new address race on the unique index: the loser runs again and
   * merges. `work` is a whole transaction (task creation's too, whose bare addresses are upserted).
   */
  async retryingUniqueRaces<T>(work: () => Promise<T>): Promise<T> {
    return retryOnConflict(async () => {
      try {
        return await work();
      } catch (error) {
        if (pgErrorCode(error) === PG_UNIQUE_VIOLATION) throw new ConcurrencyError('contacts', 'any');
        throw error;
      }
    });
  }
}

function mergeInto(
  base: MergedContact | undefined,
  input: Partial<MergedContact> | ContactInput,
  email: string,
): MergedContact {
  return {
    email,
    name: input.name ?? base?.name ?? null,
    attributes: { ...(base?.attributes ?? {}), ...(input.attributes ?? {}) },
    tags: [...new Set([...(base?.tags ?? []), ...(input.tags ?? [])])],
  };
}

const sameContact = (a: MergedContact, b: MergedContact) =>
  a.name === b.name &&
  JSON.stringify(a.attributes) === JSON.stringify(b.attributes) &&
  JSON.stringify(a.tags) === JSON.stringify(b.tags);
