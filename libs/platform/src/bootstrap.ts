import { DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { AppConfig, ConfigError, loadConfig } from '@edm/config';
import { JsonLogger, Metrics } from '@edm/observability';
import { refuseDeepBodies } from './body-depth';
import { GlobalExceptionFilter } from './global-exception.filter';
import { RateLimitRule, RateLimits } from './rate-limit/rate-limit.middleware';

export interface ServiceDefinition {
  service: string;
  module: (config: AppConfig) => DynamicModule;
  port: (config: AppConfig) => number;
  /** `raw`: every body is kept as the exact text received (webhooks, whose signatures cover the bytes). */
  body?: 'json' | 'raw';
  /** Per-client-IP limits on public routes, checked before the body is read. */
  rateLimits?: (config: AppConfig) => RateLimitRule[];
  /** Extra wiring before listen (OpenAPI, routes answered outside Express, ...). */
  configure?: (
    app: NestExpressApplication,
    config: AppConfig,
    platform: PlatformParts,
  ) => void | Promise<void>;
}

/** What the platform set up that a service's own wiring may share. */
export interface PlatformParts {
  logger: JsonLogger;
  /** The per-client limits of `rateLimits`, if any. */
  rateLimits: RateLimits | null;
}

/** Exit code for a configuration error (EX_CONFIG), so supervisors do not restart in a loop. */
const EX_CONFIG = 78;

export async function createService(
  definition: ServiceDefinition,
  config: AppConfig,
): Promise<NestExpressApplication> {
  const logger = new JsonLogger(definition.service, config.LOG_LEVEL);
  const app = await NestFactory.create<NestExpressApplication>(definition.module(config), {
    logger,
    bodyParser: false,
    abortOnError: false,
  });
  app.set('trust proxy', config.HTTP_TRUST_PROXY);
  const rateLimits = definition.rateLimits
    ? new RateLimits(definition.rateLimits(config), app.get(Metrics))
    : null;
  if (rateLimits) app.use(rateLimits.middleware());
  const body = { limit: config.HTTP_BODY_LIMIT_BYTES, verify: refuseDeepBodies };
  if (definition.body === 'raw') app.useBodyParser('text', { ...body, type: () => true });
  else app.useBodyParser('json', { ...body, strict: true });
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.useGlobalFilters(new GlobalExceptionFilter(logger));
  await definition.configure?.(app, config, { logger, rateLimits });
  return app;
}

/** Boots a service as a process: validated config, JSON logs, graceful SIGTERM with a deadline. */
export async function runService(definition: ServiceDefinition): Promise<void> {
  let config: AppConfig;
  try {
    config = loadConfig();
  } catch (error) {
    process.stderr.write(
      `${definition.service}: ${error instanceof ConfigError ? error.message : String(error)}\n`,
    );
    process.exit(EX_CONFIG);
  }
  const logger = new JsonLogger(definition.service, config.LOG_LEVEL);
  let app: NestExpressApplication;
  try {
    app = await createService(definition, config);
    await app.listen(definition.port(config), '0.0.0.0');
    logger.event('info', 'listening', { port: (app.getHttpServer().address() as { port: number }).port });
  } catch (error) {
    logger.event('error', 'start-up failed', { error: error instanceof Error ? error.stack : String(error) });
    process.exit(1);
  }
  // Stop taking work, let the shutdown hooks finish or release what is in flight, drain NATS,
  // close Postgres; past the deadline, exit anyway so an orchestrator is never kept waiting.
  let shuttingDown = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (shuttingDown) return;
      shuttingDown = true;
      logger.event('info', 'shutting down', { signal });
      setTimeout(() => {
        logger.event('error', 'shutdown deadline passed, exiting', {
          deadlineMs: config.SHUTDOWN_TIMEOUT_MS,
        });
        process.exit(1);
      }, config.SHUTDOWN_TIMEOUT_MS).unref();
      app.close().then(
        () => process.exit(0),
        (error: unknown) => {
          logger.event('error', 'shutdown failed', { error: String(error) });
          process.exit(1);
        },
      );
    });
  }
}
