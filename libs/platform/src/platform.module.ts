import {
  BeforeApplicationShutdown,
  DynamicModule,
  Inject,
  Injectable,
  Module,
  OnApplicationBootstrap,
} from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { DataSource } from 'typeorm';
import { APP_CONFIG, AppConfig, ConfigModule } from '@edm/config';
import { EventStore } from '@edm/event-store';
import { JetStreamService, OutboxRelay } from '@edm/messaging';
import { JsonLogger, Metrics } from '@edm/observability';
import { PersistenceModule } from '@edm/persistence';
import { allProjections } from '@edm/read-models';
import { HealthController } from './health.controller';
import { MetricsController } from './metrics.controller';

export const SERVICE_NAME = Symbol('SERVICE_NAME');

/** Starts the relay once the app is up, and stops work in order on SIGTERM. */
@Injectable()
class PlatformLifecycle implements OnApplicationBootstrap, BeforeApplicationShutdown {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly relay: OutboxRelay,
    private readonly jetstream: JetStreamService,
    private readonly metrics: Metrics,
  ) {}

  onApplicationBootstrap(): void {
    const relay = this.relay;
    const jetstream = this.jetstream;
    this.metrics.gauge(
      'edm_relay_active',
      'Whether this process holds the active outbox relay (1) or stands by (0).',
      [],
      function () {
        this.set(relay.role === 'active' ? 1 : 0);
      },
    );
    this.metrics.gauge(
      'edm_relay_published_events',
      'Events published to JetStream by this process relay.',
      [],
      function () {
        this.set(relay.published);
      },
    );
    this.metrics.gauge(
      'edm_relay_lag_events',
      'Committed events not yet published to JetStream.',
      [],
      async function () {
        if (relay.role === 'active') this.set(await relay.lag().catch(() => 0));
      },
    );
    this.metrics.gauge(
      'edm_consumer_messages',
      'Messages handled by this process durable consumers, by decision.',
      ['consumer', 'decision'],
      function () {
        for (const [consumer, stats] of jetstream.stats) {
          this.set({ consumer, decision: 'ack' }, stats.acked);
          this.set({ consumer, decision: 'nak' }, stats.naked);
          this.set({ consumer, decision: 'term' }, stats.termed);
        }
      },
    );
    if (this.config.RELAY_ENABLED) this.relay.start();
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.relay.stop();
    await this.jetstream.drain();
  }
}

/**
 * What every service shares: validated config, Postgres with migrations, JetStream with the
 * stream provisioned, the event store, the outbox relay (active or standby), health and metrics.
 */
@Module({})
export class PlatformModule {
  static forRoot(service: string, config: AppConfig): DynamicModule {
    return {
      module: PlatformModule,
      global: true,
      imports: [ConfigModule.forRoot(config), PersistenceModule.forRoot(service), TerminusModule],
      controllers: [HealthController, MetricsController],
      providers: [
        { provide: SERVICE_NAME, useValue: service },
        { provide: JsonLogger, useValue: new JsonLogger(service, config.LOG_LEVEL) },
        { provide: Metrics, useValue: new Metrics(service) },
        {
          provide: JetStreamService,
          inject: [JsonLogger],
          useFactory: async (logger: JsonLogger) => {
            const jetstream = new JetStreamService({
              servers: config.NATS_URL,
              stream: config.NATS_STREAM,
              subjectPrefix: config.NATS_SUBJECT_PREFIX,
              duplicateWindowMs: config.NATS_DUPLICATE_WINDOW_MS,
              name: `${service}-${process.pid}`,
              log: (level, message, fields) => logger.event(level, message, fields),
            });
            await jetstream.connect();
            return jetstream;
          },
        },
        {
          provide: EventStore,
          inject: [DataSource],
          useFactory: (dataSource: DataSource) => {
            const store = new EventStore(dataSource);
            store.register(...allProjections);
            return store;
          },
        },
        {
          provide: OutboxRelay,
          inject: [DataSource, EventStore, JetStreamService, JsonLogger],
          useFactory: (
            dataSource: DataSource,
            store: EventStore,
            jetstream: JetStreamService,
            logger: JsonLogger,
          ) =>
            new OutboxRelay(dataSource, store, jetstream, {
              databaseUrl: config.DATABASE_URL,
              name: 'main',
              batchSize: config.RELAY_BATCH_SIZE,
              pollIntervalMs: config.RELAY_POLL_INTERVAL_MS,
              log: (level, message, fields) => logger.event(level, message, fields),
            }),
        },
        PlatformLifecycle,
      ],
      exports: [SERVICE_NAME, JsonLogger, Metrics, JetStreamService, EventStore, OutboxRelay],
    };
  }
}
