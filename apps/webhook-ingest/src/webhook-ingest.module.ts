import { DynamicModule, Module } from '@nestjs/common';
import { AppConfig } from '@edm/config';
import { EventBusSubscriber, PlatformModule } from '@edm/platform';

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
