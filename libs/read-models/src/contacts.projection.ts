import { EntityManager } from 'typeorm';
import { DomainEvent, EventData, isEvent } from '@edm/events';
import { Projection } from '@edm/event-store';

export const contactsProjection: Projection = {
  name: 'contacts',
  tables: ['contacts'],
  handles: ['ContactUpserted', 'ContactSuppressed', 'ContactSoftBounced'],
  async apply(tx: EntityManager, events: readonly DomainEvent[]) {
    // Upserts come in large batches (imports): one statement for a run of them. A statement may
    // touch a row only once, so a contact upserted again (a replay, a re-import) starts a new run.
    let run: { data: EventData<'ContactUpserted'>; at: string }[] = [];
    const inRun = new Set<string>();
    const flush = async () => {
      if (run.length === 0) return;
      await tx.query(
        `INSERT INTO contacts (id, account_id, email, name, attributes, tags, created_at, updated_at)
         SELECT u.id, u.account_id, u.email, u.name, u.attributes::jsonb, ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)), u.at, u.at
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
                AS u(id, account_id, email, name, attributes, tags, at)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, attributes = excluded.attributes, tags = excluded.tags,
                                        updated_at = excluded.updated_at`,
        [
          run.map((r) => r.data.contactId),
          run.map((r) => r.data.accountId),
          run.map((r) => r.data.email),
          run.map((r) => r.data.name),
          run.map((r) => JSON.stringify(r.data.attributes)),
          run.map((r) => JSON.stringify(r.data.tags)),
          run.map((r) => r.at),
        ],
      );
      run = [];
      inRun.clear();
    };
    for (const event of events) {
      if (isEvent(event, 'ContactUpserted')) {
        if (inRun.has(event.data.contactId)) await flush();
        run.push({ data: event.data, at: event.occurredAt });
        inRun.add(event.data.contactId);
        continue;
      }
      await flush();
      if (isEvent(event, 'ContactSuppressed')) {
        await tx.query(`UPDATE contacts SET status = $2, updated_at = $3 WHERE id = $1`, [
          event.data.contactId,
          event.data.status,
          event.occurredAt,
        ]);
      } else if (isEvent(event, 'ContactSoftBounced')) {
        await tx.query(`UPDATE contacts SET soft_bounces = $2, updated_at = $3 WHERE id = $1`, [
          event.data.contactId,
          event.data.softBounces,
          event.occurredAt,
        ]);
      }
    }
    await flush();
  },
};
