import { Controller, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { z } from 'zod';
import { newEvent } from '@edm/events';
import { EventStore } from '@edm/event-store';
import { notFound, ZodPipe } from '@edm/platform';
import { commandMetadata } from '../auth/command-metadata';
import { CurrentPrincipal, Principal } from '../auth/principal';

export const listAlertsQuery = z
  .object({
    status: z.enum(['firing', 'resolved']).optional(),
    kind: z.string().max(100).optional(),
    limit: z.coerce.number().int().min(1).max(500).default(100),
  })
  .strict();

const SELECT = `SELECT id, kind, subject, severity, message, details, status, first_seen_at AS "firstSeenAt", resolved_at AS "resolvedAt",
                       acknowledged_at AS "acknowledgedAt", acknowledged_by AS "acknowledgedBy" FROM alerts`;

/** Alerts about an account's tasks and services; system-wide ones (relay, consumers) for the admin key only. */
@Controller('api/v1/alerts')
export class AlertsController {
  constructor(
    private readonly dataSource: DataSource,
    private readonly store: EventStore,
  ) {}

  @Get()
  async list(
    @CurrentPrincipal() p: Principal,
    @Query(new ZodPipe(listAlertsQuery)) q: z.infer<typeof listAlertsQuery>,
  ) {
    const items = await this.dataSource.query(
      `${SELECT} WHERE (account_id = $1 OR ($2 AND account_id IS NULL)) AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR kind = $4)
        ORDER BY first_seen_at DESC LIMIT $5`,
      [p.accountId, p.role === 'admin', q.status ?? null, q.kind ?? null, q.limit],
    );
    return { items };
  }

  @Post(':id/acknowledge')
  @HttpCode(200)
  async acknowledge(@CurrentPrincipal() p: Principal, @Param('id') id: string) {
    if (!z.string().uuid().safeParse(id).success) throw notFound('alert');
    const [alert] = await this.dataSource.query(
      `${SELECT} WHERE id = $1 AND (account_id = $2 OR ($3 AND account_id IS NULL))`,
      [id, p.accountId, p.role === 'admin'],
    );
    if (!alert) throw notFound('alert');
    if (!alert.acknowledgedAt) {
      await this.store.appendToStream(
        `alert-${id}`,
        'any',
        [newEvent('AlertAcknowledged', { alertId: id, by: `api-key:${p.keyId}` })],
        commandMetadata(p),
      );
    }
    const [updated] = await this.dataSource.query(`${SELECT} WHERE id = $1`, [id]);
    return updated;
  }
}
