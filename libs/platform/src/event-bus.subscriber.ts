import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { DomainEvent } from '@edm/events';
import { ack, AckDecision, JetStreamService } from '@edm/messaging';
import { Metrics } from '@edm/observability';
import { SERVICE_NAME } from './platform.module';

/**
 * A service's durable consumer of every event, named after the service. It counts what it
 * receives; the services' own handlers (wake-ups, health state) hang off it.
 */
@Injectable()
export class EventBusSubscriber implements OnApplicationBootstrap {
  private readonly received;
  private readonly listeners: ((event: DomainEvent) => Promise<void> | void)[] = [];

  constructor(
    private readonly jetstream: JetStreamService,
    @Inject(SERVICE_NAME) private readonly service: string,
    metrics: Metrics,
  ) {
    this.received = metrics.counter(
      'edm_bus_events_received_total',
      'Events received from the bus, by type.',
      ['type'],
    );
  }

  /** A listener that throws makes the message be redelivered later (nak with backoff). */
  addListener(listener: (event: DomainEvent) => Promise<void> | void): void {
    this.listeners.push(listener);
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.jetstream.consume({ durable: this.service }, (event) => this.handle(event));
  }

  private async handle(event: DomainEvent): Promise<AckDecision> {
    this.received.inc({ type: event.type });
    for (const listener of this.listeners) await listener(event);
    return ack();
  }
}
