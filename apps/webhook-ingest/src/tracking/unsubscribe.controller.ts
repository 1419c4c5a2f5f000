import { Controller, Get, Header, HttpCode, Param, Post, Req } from '@nestjs/common';
import type { Request } from 'express';
import { DomainError } from '@edm/platform';
import { TRACKING_ID, TrackingHitRecorder } from './tracking-hit.recorder';

const page = (title: string, body: string) =>
  `<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${title}</title></head>` +
  `<body style="font-family:sans-serif;max-width:32rem;margin:4rem auto">${body}</body></html>`;

/**
 * The List-Unsubscribe target. GET only shows a confirmation button, because mail scanners open
 * links; the unsubscribe itself is a POST, the RFC 8058 one-click form included. The hit is stored
 * before it is answered, like any webhook, and applied by the same processor.
 */
@Controller('t/unsubscribe')
export class UnsubscribeController {
  constructor(private readonly recorder: TrackingHitRecorder) {}

  @Get(':trackingId')
  @Header('Content-Type', 'text/html; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  confirm(@Param('trackingId') trackingId: string) {
    if (!TRACKING_ID.test(trackingId)) throw new DomainError('NOT_FOUND', 'unknown link');
    return page(
      'Unsubscribe',
      `<p>Stop receiving these emails?</p><form method="post"><button type="submit">Unsubscribe</button></form>`,
    );
  }

  @Post(':trackingId')
  @HttpCode(200)
  @Header('Content-Type', 'text/html; charset=utf-8')
  async unsubscribe(@Param('trackingId') trackingId: string, @Req() request: Request) {
    await this.recorder.record(request, { kind: 'unsubscribe', trackingId });
    return page('Unsubscribed', '<p>You are unsubscribed.</p>');
  }
}
