import { z } from 'zod';
import { subTaskStatus } from '@edm/events';

export const createTaskSchema = z
  .object({
    name: z.string().trim().min(1).max(200),
    subject: z.string().min(1).max(998).optional(),
    html: z.string().max(2_000_000).optional(),
    text: z.string().max(2_000_000).optional(),
    templateId: z.string().uuid().optional(),
    recipients: z
      .object({
        contactIds: z.array(z.string().uuid()).max(100_000).optional(),
        tags: z.array(z.string().trim().min(1).max(100)).max(50).optional(),
        emails: z.array(z.string().max(320)).max(10_000).optional(),
      })
      .strict()
      .refine((r) => (r.contactIds?.length ?? 0) + (r.tags?.length ?? 0) + (r.emails?.length ?? 0) > 0, {
        message: 'name at least one contact id, tag or email',
      }),
    serviceIds: z.array(z.string().uuid()).max(100).optional(),
    scheduledAt: z.string().datetime({ offset: true }).optional(),
    priority: z.number().int().min(-100).max(100).optional(),
  })
  .strict()
  .refine((t) => t.templateId || (t.subject && (t.html || t.text)), {
    message: 'give templateId, or subject with html or text',
    path: ['templateId'],
  });
export type CreateTaskInput = z.infer<typeof createTaskSchema>;

export const listSubTasksQuery = z
  .object({
    status: subTaskStatus.optional(),
    limit: z.coerce.number().int().min(1).max(1_000).default(100),
    cursor: z.string().uuid().optional(),
  })
  .strict();
export type ListSubTasksQuery = z.infer<typeof listSubTasksQuery>;

export const listTasksQuery = z
  .object({
    status: z.enum(['scheduled', 'sending', 'paused', 'completed', 'cancelled']).optional(),
    limit: z.coerce.number().int().min(1).max(500).default(50),
    cursor: z.string().uuid().optional(),
  })
  .strict();
export type ListTasksQuery = z.infer<typeof listTasksQuery>;
