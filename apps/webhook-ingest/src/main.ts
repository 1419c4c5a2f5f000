import 'reflect-metadata';
import { runService } from '@edm/platform';
import { WebhookIntakeService } from './intake/webhook-intake.service';
import { installWebhookRoute } from './intake/webhook-route';
import { WebhookIngestModule } from './webhook-ingest.module';

void runService({
  service: 'webhook-ingest',
  module: (config) => WebhookIngestModule.forRoot(config),
  port: (config) => config.WEBHOOK_INGEST_PORT,
  body: 'raw',
  rateLimits: (config) => [
    {
      name: 'webhooks',
      pathPrefix: '/api/webhooks/',
      perSecond: config.WEBHOOK_RATE_LIMIT_PER_SECOND,
      burst: config.WEBHOOK_RATE_LIMIT_BURST,
    },
    {
      name: 'tracking',
      pathPrefix: '/t/',
      perSecond: config.TRACKING_RATE_LIMIT_PER_SECOND,
      burst: config.TRACKING_RATE_LIMIT_BURST,
    },
  ],
  configure: (app, config, platform) => {
    const intake = app.get(WebhookIntakeService);
    installWebhookRoute(app, {
      receive: (incoming) => intake.receive(incoming),
      bodyLimitBytes: config.HTTP_BODY_LIMIT_BYTES,
      platform,
    });
  },
});
