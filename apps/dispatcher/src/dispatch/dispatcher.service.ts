import { hostname } from 'node:os';
import { BeforeApplicationShutdown, Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { APP_CONFIG, AppConfig } from '@edm/config';
import { openCredentials } from '@edm/domain';
import { DomainEvent, EventMetadata } from '@edm/events';
import { EventStore, uuidv7 } from '@edm/event-store';
import { JsonLogger, Metrics } from '@edm/observability';
import { EventBusSubscriber } from '@edm/platform';
import { createMailSender, isProvider, MailSender } from '@edm/providers';
import { DispatchService } from './lease-sub-tasks';
import { PostgresSandboxMailbox, SandboxMailboxWriter } from './postgres-sandbox-mailbox';
import { reclaimLeases, startDueTasks } from '@edm/workflows';
import { ServiceLoop } from './service-loop';

/** Events after which some service may have new work, or a service changed. */
const WAKING_EVENTS = new Set<DomainEvent['type']>([
  'TaskCreated',
  'TaskStarted',
  'TaskResumed',
  'TaskRepaired',
  'SubTaskReleased',
  'SubTaskRetryScheduled',
  'ServiceCreated',
  'ServiceUpdated',
  'ServiceUnfrozen',
  'ServiceEnabled',
]);

/**
 * Runs one loop per sending service, keeps the set of loops in step with the services, reclaims
 * expired leases and starts scheduled tasks. On shutdown: no new leases, in-flight sends are
 * recorded, and leases this replica holds but never started are given back.
 */
@Injectable()
export class DispatcherService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  readonly owner = `${hostname()}:${process.pid}:${uuidv7().slice(-8)}`;
  private readonly loops = new Map<string, ServiceLoop>();
  private readonly senders = new Map<string, { updatedAt: number; sender: MailSender }>();
  private reaper?: NodeJS.Timeout;
  private readonly mailbox: SandboxMailboxWriter;
  private stopping = false;
  private readonly sends;
  private readonly restarts;
  private readonly paceLag;

  constructor(
    private readonly dataSource: DataSource,
    private readonly store: EventStore,
    private readonly logger: JsonLogger,
    private readonly bus: EventBusSubscriber,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    metrics: Metrics,
  ) {
    this.mailbox = new SandboxMailboxWriter(dataSource);
    this.sends = metrics.counter('edm_dispatch_sends_total', 'Sends by service and outcome.', [
      'service',
      'provider',
      'outcome',
    ]);
    this.restarts = metrics.counter(
      'edm_dispatch_loop_restarts_total',
      'Service loops restarted after a crash.',
      ['service'],
    );
    this.paceLag = metrics.histogram(
      'edm_dispatch_pace_lag_seconds',
      'How late a paced request started after its slot.',
      [],
      [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    );
    const loops = this.loops;
    metrics.gauge('edm_dispatch_loops', 'Service loops running in this replica.', [], function () {
      this.set(loops.size);
    });
    metrics.gauge(
      'edm_dispatch_sends_in_flight',
      'Provider requests in flight in this replica.',
      [],
      function () {
        this.set([...loops.values()].reduce((n, loop) => n + loop.sendsInFlight, 0));
      },
    );
  }

  async onApplicationBootstrap(): Promise<void> {
    this.bus.addListener((event) => this.onEvent(event));
    await this.syncLoops();
    this.reaper = setInterval(() => void this.housekeeping(), this.config.DISPATCH_REAPER_INTERVAL_MS);
    void this.housekeeping();
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopping = true;
    clearInterval(this.reaper);
    await Promise.all([...this.loops.values()].map((loop) => loop.stop()));
    let released = 0;
    for (let n = -1; n !== 0; released += n) {
      n = await this.dataSource.transaction((tx) =>
        reclaimLeases(tx, this.store, { owner: this.owner, onlyAllocated: true }, this.meta()),
      );
    }
    for (const { sender } of this.senders.values()) (sender as MailSender & { close?: () => void }).close?.();
    this.logger.event('info', 'dispatcher stopped', { releasedLeases: released });
  }

  private async onEvent(event: DomainEvent): Promise<void> {
    if (this.stopping || !WAKING_EVENTS.has(event.type)) return;
    if (event.type.startsWith('Service')) await this.syncLoops();
    for (const loop of this.loops.values()) loop.wake();
  }

  /** One loop per service that is not disabled. */
  private async syncLoops(): Promise<void> {
    if (this.stopping) return;
    const rows: { id: string }[] = await this.dataSource.query(
      `SELECT id FROM sending_services WHERE status <> 'disabled'`,
    );
    const wanted = new Set(rows.map((r) => r.id));
    for (const id of wanted) {
      if (this.loops.has(id)) continue;
      const loop = new ServiceLoop(id, {
        dataSource: this.dataSource,
        store: this.store,
        config: this.config,
        owner: this.owner,
        senderFor: (service) => this.senderFor(service),
        meta: () => this.meta(),
        log: (level, message, fields) => this.logger.event(level, message, fields),
        onSend: (service, outcome) =>
          this.sends.inc({ service: service.name, provider: service.provider, outcome }),
        onRestart: (serviceId) => this.restarts.inc({ service: serviceId }),
        onPaceLag: (seconds) => this.paceLag.observe(seconds),
      });
      this.loops.set(id, loop);
      loop.start();
    }
    for (const [id, loop] of this.loops) {
      if (wanted.has(id)) continue;
      this.loops.delete(id);
      void loop.stop();
    }
  }

  private async housekeeping(): Promise<void> {
    if (this.stopping) return;
    try {
      const reclaimed = await this.dataSource.transaction((tx) =>
        reclaimLeases(tx, this.store, { expired: true }, this.meta()),
      );
      const started = await this.dataSource.transaction((tx) => startDueTasks(tx, this.store, this.meta()));
      if (reclaimed) this.logger.event('warn', 'expired leases reclaimed', { count: reclaimed });
      if (reclaimed || started) for (const loop of this.loops.values()) loop.wake();
      await this.syncLoops();
    } catch (error) {
      this.logger.event('error', 'dispatcher housekeeping failed', { error: String(error) });
    }
  }

  /** Senders are built from the service's current settings and rebuilt when it changes. */
  private senderFor(service: DispatchService): MailSender {
    const cached = this.senders.get(service.id);
    if (cached && cached.updatedAt === service.updatedAt.getTime()) return cached.sender;
    if (!isProvider(service.provider)) throw new Error(`unknown provider ${service.provider}`);
    const credentials = service.credentialsSealed
      ? openCredentials(this.config.encryptionKey, service.credentialsSealed)
      : {};
    const options =
      service.provider === 'sandbox'
        ? {
            callbackUrl: `${this.config.TRACKING_BASE_URL}/api/webhooks/sandbox/${service.id}`,
            ...service.options,
          }
        : service.options;
    const sender = createMailSender(service.provider, credentials, options, {
      sandbox: {
        mailbox: new PostgresSandboxMailbox(this.mailbox, service.id),
        onCallbackFailure: (failure) =>
          this.logger.event('warn', 'sandbox callback given up', {
            serviceId: service.id,
            type: failure.event.type,
            reason: failure.reason,
          }),
      },
    });
    (cached?.sender as (MailSender & { close?: () => void }) | undefined)?.close?.();
    this.senders.set(service.id, { updatedAt: service.updatedAt.getTime(), sender });
    return sender;
  }

  private meta(): EventMetadata {
    return { correlationId: uuidv7(), causationId: null, actor: `dispatcher:${this.owner}` };
  }
}
