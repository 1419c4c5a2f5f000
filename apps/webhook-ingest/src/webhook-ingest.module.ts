import { DynamicModule, Module } from '@nestjs/common';
import { AppConfig } from '@edm/config';
import { PlatformModule } from '@edm/platform';
import { EventBusSubscriber } from './event-bus/event-bus.subscriber';

@Module({})
export class WebhookIngestModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: WebhookIngestModule,
      imports: [PlatformModule.forRoot('webhook-ingest', config)],
      providers: [EventBusSubscriber],
    };
  }
}
