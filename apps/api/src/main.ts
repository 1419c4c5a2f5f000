import 'reflect-metadata';
import { SwaggerModule } from '@nestjs/swagger';
import { runService } from '@edm/platform';
import { ApiModule } from './api.module';
import { buildOpenApiDocument } from './openapi/openapi.document';

void runService({
  service: 'api',
  module: (config) => ApiModule.forRoot(config),
  port: (config) => config.API_PORT,
  configure: (app, config) => {
    app.useBodyParser('text', {
      type: ['text/csv', 'text/plain'],
      limit: Math.max(config.HTTP_BODY_LIMIT_BYTES, 16 * 1_048_576),
    });
    SwaggerModule.setup('api/docs', app, buildOpenApiDocument());
  },
});
