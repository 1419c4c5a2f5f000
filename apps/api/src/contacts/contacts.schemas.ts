import { z } from 'zod';

const tag = z.string().trim().min(1).max(100);
export const contactInput = z
  .object({
    email: z.string().max(320),
    name: z.string().max(200).nullable().optional(),
    attributes: z
      .record(z.string().max(100), z.union([z.string().max(2_000), z.number(), z.boolean(), z.null()]))
      .optional(),
    tags: z.array(tag).max(50).optional(),
  })
  .strict();
export type ContactInput = z.infer<typeof contactInput>;

export const MAX_CONTACTS_PER_REQUEST = 10_000;
export const upsertContactsSchema = z
  .object({ contacts: z.array(contactInput).min(1).max(MAX_CONTACTS_PER_REQUEST) })
  .strict();

export const listContactsQuery = z
  .object({
    tag: z.string().max(100).optional(),
    status: z.enum(['active', 'bounced', 'complained', 'unsubscribed']).optional(),
    email: z.string().max(320).optional(),
    limit: z.coerce.number().int().min(1).max(1_000).default(100),
    cursor: z.string().uuid().optional(),
  })
  .strict();
export type ListContactsQuery = z.infer<typeof listContactsQuery>;
