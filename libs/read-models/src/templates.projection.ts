import { EntityManager } from 'typeorm';
import { DomainEvent, isEvent } from '@edm/events';
import { Projection } from '@edm/event-store';

export const templatesProjection: Projection = {
  name: 'templates',
  tables: ['templates'],
  handles: ['TemplateCreated', 'TemplateUpdated'],
  async apply(tx: EntityManager, events: readonly DomainEvent[]) {
    for (const event of events) {
      if (isEvent(event, 'TemplateCreated')) {
        const d = event.data;
        await tx.query(
          `INSERT INTO templates (id, account_id, name, subject, html, text, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)`,
          [d.templateId, d.accountId, d.name, d.subject, d.html, d.text, event.occurredAt],
        );
      } else if (isEvent(event, 'TemplateUpdated')) {
        const c = event.data.changes;
        await tx.query(
          `UPDATE templates SET name = coalesce($2, name), subject = coalesce($3, subject),
                  html = CASE WHEN $4 THEN $5 ELSE html END, text = CASE WHEN $6 THEN $7 ELSE text END, updated_at = $8
            WHERE id = $1`,
          [
            event.data.templateId,
            c.name ?? null,
            c.subject ?? null,
            'html' in c,
            c.html ?? null,
            'text' in c,
            c.text ?? null,
            event.occurredAt,
          ],
        );
      }
    }
  },
};
