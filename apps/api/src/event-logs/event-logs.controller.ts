import { Controller, Get, Query } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { z } from 'zod';
import { ZodPipe } from '@edm/platform';
import { CurrentPrincipal, Principal } from '../auth/principal';

export const listEventLogsQuery = z
  .object({
    taskId: z.string().uuid().optional(),
    matchStatus: z.enum(['pending', 'matched', 'unmatched', 'ignored']).optional(),
    /** Newest first: pass the last item's id to get the page after it. */
    cursor: z.string().uuid().optional(),
    limit: z.coerce.number().int().min(1).max(500).default(100),
  })
  .strict();

/**
 * The provider events found in the stored webhooks and tracking hits, newest first, with how
 * each was matched: an account sees those of its services and those matched to its tasks.
 */
@Controller('api/v1/event-logs')
export class EventLogsController {
  constructor(private readonly dataSource: DataSource) {}

  @Get()
  async list(
    @CurrentPrincipal() p: Principal,
    @Query(new ZodPipe(listEventLogsQuery)) q: z.infer<typeof listEventLogsQuery>,
  ) {
    const items = await this.dataSource.query(
      `SELECT m.id, m.event_log_id AS "eventLogId", m.provider, m.service_id AS "serviceId", m.type, m.raw_type AS "rawType",
              m.recipient, m.occurred_at AS "occurredAt", l.received_at AS "receivedAt", l.verified,
              m.match_status AS "matchStatus", m.match_strategy AS "matchStrategy", m.match_attempts AS "matchAttempts",
              m.sub_task_id AS "subTaskId", m.matched_task_id AS "taskId", m.reason
         FROM mail_events m
         JOIN event_logs l ON l.id = m.event_log_id
         LEFT JOIN tasks t ON t.id = m.matched_task_id
        WHERE (m.account_id = $1 OR t.account_id = $1)
          AND ($2::uuid IS NULL OR m.matched_task_id = $2::uuid)
          AND ($3::text IS NULL OR m.match_status = $3)
          AND ($4::uuid IS NULL OR m.id < $4::uuid)
        ORDER BY m.id DESC
        LIMIT $5`,
      [p.accountId, q.taskId ?? null, q.matchStatus ?? null, q.cursor ?? null, q.limit],
    );
    return { items, nextCursor: items.length === q.limit ? items[items.length - 1].id : null };
  }
}
