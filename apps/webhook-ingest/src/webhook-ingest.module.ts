import { DynamicModule, Module } from '@nestjs/common';
import { AppConfig } from '@edm/config';
import { EventBusSubscriber, PlatformModule } from '@edm/platform';
import { RawIntakeWriter } from './intake/raw-intake.writer';
import { WebhookIntakeService } from './intake/webhook-intake.service';
import { WebhookVerifier } from './intake/webhook-verifier';
import { WebhooksController } from './intake/webhooks.controller';
import { MailEventProcessor } from './processing/mail-event.processor';
import { OpenClickController } from './tracking/open-click.controller';
import { TrackingHitRecorder } from './tracking/tracking-hit.recorder';
import { UnsubscribeController } from './tracking/unsubscribe.controller';

@Module({})
export class WebhookIngestModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: WebhookIngestModule,
      imports: [PlatformModule.forRoot('webhook-ingest', config)],
      controllers: [WebhooksController, UnsubscribeController, OpenClickController],
      providers: [
        EventBusSubscriber,
        RawIntakeWriter,
        WebhookVerifier,
        WebhookIntakeService,
        MailEventProcessor,
        TrackingHitRecorder,
      ],
    };
  }
}
