import { z } from 'zod';
import { pace } from '@edm/events';
import { PROVIDERS } from '@edm/providers';

const address = z
  .object({ email: z.string().trim().email().max(254), name: z.string().max(200).optional() })
  .strict();
const jsonObject = z.record(z.string().max(100), z.unknown());

export const createServiceSchema = z
  .object({
    name: z.string().trim().min(1).max(200),
    provider: z.enum(PROVIDERS),
    from: address,
    pace,
    dailyQuota: z.number().int().positive().max(100_000_000).nullable().optional(),
    quotaResetHourUtc: z.number().int().min(0).max(23).optional(),
    credentials: jsonObject.optional(),
    options: jsonObject.optional(),
  })
  .strict();

export const updateServiceSchema = createServiceSchema.omit({ provider: true }).partial().strict();

export const freezeServiceSchema = z
  .object({
    reason: z.string().trim().min(1).max(500),
    until: z.string().datetime({ offset: true }).optional(),
  })
  .strict();

export type CreateServiceInput = z.infer<typeof createServiceSchema>;
export type UpdateServiceInput = z.infer<typeof updateServiceSchema>;
export type FreezeServiceInput = z.infer<typeof freezeServiceSchema>;
