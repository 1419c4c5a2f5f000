import { Controller, Get, Inject } from '@nestjs/common';
import {
  HealthCheck,
  HealthCheckService,
  HealthIndicatorResult,
  HealthIndicatorService,
} from '@nestjs/terminus';
import { DataSource } from 'typeorm';
import { APP_CONFIG, AppConfig } from '@edm/config';
import { JetStreamService } from '@edm/messaging';

/** Resolves with the check, or rejects once `ms` have passed: a hung dependency is a down one. */
const within = <T>(ms: number, work: Promise<T>): Promise<T> =>
  Promise.race([
    work,
    new Promise<T>((_, reject) =>
      setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref(),
    ),
  ]);

@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicator: HealthIndicatorService,
    private readonly dataSource: DataSource,
    private readonly jetstream: JetStreamService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** The process is up and its event loop turns; dependencies are readiness' business. */
  @Get('live')
  @HealthCheck()
  live() {
    return this.health.check([
      async () => this.indicator.check('process').up({ uptimeSeconds: Math.round(process.uptime()) }),
    ]);
  }

  @Get('ready')
  @HealthCheck()
  ready() {
    return this.health.check([() => this.postgres(), () => this.nats(), () => this.stream()]);
  }

  private async probe(key: string, work: () => Promise<unknown>): Promise<HealthIndicatorResult> {
    const session = this.indicator.check(key);
    try {
      await within(this.config.HEALTH_CHECK_TIMEOUT_MS, work());
      return session.up();
    } catch (error) {
      return session.down({ message: error instanceof Error ? error.message : String(error) });
    }
  }

  private postgres() {
    return this.probe('postgres', () => this.dataSource.query('SELECT 1'));
  }

  private nats() {
    return this.probe('nats', async () => {
      if (!this.jetstream.isConnected()) throw new Error('not connected');
      await this.jetstream.connection.flush();
    });
  }

  private stream() {
    return this.probe('stream', async () => {
      if (!(await this.jetstream.streamExists()))
        throw new Error(`stream ${this.config.NATS_STREAM} is missing`);
    });
  }
}
