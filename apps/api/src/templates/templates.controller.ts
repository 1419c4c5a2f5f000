import { Body, Controller, Get, HttpCode, Param, Patch, Post } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { z } from 'zod';
import { newEvent } from '@edm/events';
import { EventStore, retryOnConflict, uuidv7 } from '@edm/event-store';
import { notFound, ZodPipe } from '@edm/platform';
import { commandMetadata } from '../auth/command-metadata';
import { CurrentPrincipal, Principal } from '../auth/principal';

const content = {
  name: z.string().trim().min(1).max(200),
  subject: z.string().min(1).max(998),
  html: z.string().max(2_000_000).nullable().optional(),
  text: z.string().max(2_000_000).nullable().optional(),
};
const createTemplateSchema = z
  .object(content)
  .strict()
  .refine((t) => t.html || t.text, { message: 'html or text is required', path: ['html'] });
const updateTemplateSchema = z.object(content).partial().strict();

const SELECT = `SELECT id, name, subject, html, text, created_at AS "createdAt", updated_at AS "updatedAt" FROM templates`;

/** Templates: subject, HTML and text with {{variables}} filled per contact when sent. */
@Controller('api/v1/templates')
export class TemplatesController {
  constructor(
    private readonly dataSource: DataSource,
    private readonly store: EventStore,
  ) {}

  @Post()
  @HttpCode(201)
  async create(
    @CurrentPrincipal() p: Principal,
    @Body(new ZodPipe(createTemplateSchema)) body: z.infer<typeof createTemplateSchema>,
  ) {
    const templateId = uuidv7();
    await this.store.appendToStream(
      `template-${templateId}`,
      'no_stream',
      [
        newEvent('TemplateCreated', {
          templateId,
          accountId: p.accountId,
          name: body.name,
          subject: body.subject,
          html: body.html ?? null,
          text: body.text ?? null,
        }),
      ],
      commandMetadata(p),
    );
    return this.get(p, templateId);
  }

  @Get()
  async list(@CurrentPrincipal() p: Principal) {
    return {
      items: await this.dataSource.query(`${SELECT} WHERE account_id = $1 ORDER BY created_at`, [
        p.accountId,
      ]),
    };
  }

  @Get(':id')
  async get(@CurrentPrincipal() p: Principal, @Param('id') id: string) {
    if (!z.string().uuid().safeParse(id).success) throw notFound('template');
    const [row] = await this.dataSource.query(`${SELECT} WHERE account_id = $1 AND id = $2`, [
      p.accountId,
      id,
    ]);
    if (!row) throw notFound('template');
    return row;
  }

  @Patch(':id')
  async update(
    @CurrentPrincipal() p: Principal,
    @Param('id') id: string,
    @Body(new ZodPipe(updateTemplateSchema)) body: z.infer<typeof updateTemplateSchema>,
  ) {
    await this.get(p, id);
    await retryOnConflict(() =>
      this.store.appendToStream(
        `template-${id}`,
        'any',
        [newEvent('TemplateUpdated', { templateId: id, changes: body })],
        commandMetadata(p),
      ),
    );
    return this.get(p, id);
  }
}
