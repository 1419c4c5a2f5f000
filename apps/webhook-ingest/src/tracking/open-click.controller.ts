import { Controller, Get, Inject, Param, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { APP_CONFIG, AppConfig } from '@edm/config';
import { trackingKey, verifyClick } from '@edm/domain';
import { DomainError } from '@edm/platform';
import { TrackingHitRecorder } from './tracking-hit.recorder';

/** A transparent 1×1 GIF. */
const PIXEL = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');

/** Open pixel and click redirect for mail sent without a provider's own tracking (SMTP). */
@Controller('t')
export class OpenClickController {
  private readonly key: Buffer;

  constructor(
    private readonly recorder: TrackingHitRecorder,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.key = trackingKey(config.encryptionKey);
  }

  @Get('open/:file')
  async open(@Param('file') file: string, @Req() request: Request, @Res() response: Response) {
    await this.recorder.record(request, { kind: 'open', trackingId: file.replace(/\.gif$/, '') });
    response.set({ 'Content-Type': 'image/gif', 'Cache-Control': 'no-store, max-age=0' }).end(PIXEL);
  }

  /** Redirects only to a URL signed for this mail: never an open redirect. */
  @Get('click/:trackingId')
  async click(
    @Param('trackingId') trackingId: string,
    @Query('u') url: unknown,
    @Query('s') signature: unknown,
    @Req() request: Request,
    @Res() response: Response,
  ) {
    if (
      typeof url !== 'string' ||
      typeof signature !== 'string' ||
      !/^https?:\/\//i.test(url) ||
      !verifyClick(this.key, trackingId, url, signature)
    ) {
      throw new DomainError('NOT_FOUND', 'unknown link');
    }
    await this.recorder.record(request, { kind: 'click', trackingId, url });
    response.redirect(302, url);
  }
}
