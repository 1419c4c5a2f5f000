import { Controller, HttpCode, Param, Post, Req } from '@nestjs/common';
import type { Request } from 'express';
import { WebhookIntakeService } from './webhook-intake.service';

const incoming = (request: Request, provider: string, serviceId: string | null) => ({
  provider,
  serviceId,
  path: request.path,
  contentType: request.headers['content-type'],
  headers: request.headers,
  body: request.body as unknown,
});

@Controller('api/webhooks')
export class WebhooksController {
  constructor(private readonly intake: WebhookIntakeService) {}

  /** EngageLab's callbacks, on the path the old system used. */
  @Post('mail-event')
  @HttpCode(200)
  engagelab(@Req() request: Request) {
    return this.intake.receive(incoming(request, 'engagelab', null));
  }

  @Post(':provider/:serviceId')
  @HttpCode(200)
  provider(
    @Req() request: Request,
    @Param('provider') provider: string,
    @Param('serviceId') serviceId: string,
  ) {
    return this.intake.receive(incoming(request, provider, serviceId));
  }
}
