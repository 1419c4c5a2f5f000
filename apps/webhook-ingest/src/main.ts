import 'reflect-metadata';
import { runService } from '@edm/platform';
import { WebhookIngestModule } from './webhook-ingest.module';

void runService({
  service: 'webhook-ingest',
  module: (config) => WebhookIngestModule.forRoot(config),
  port: (config) => config.WEBHOOK_INGEST_PORT,
  body: 'raw',
});
