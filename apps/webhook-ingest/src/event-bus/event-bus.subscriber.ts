import { Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { DomainEvent } from '@edm/events';
import { ack, AckDecision, JetStreamService } from '@edm/messaging';
import { Metrics } from '@edm/observability';

/** The webhook-ingest's durable consumer of the event bus. */
@Injectable()
export class EventBusSubscriber implements OnApplicationBootstrap {
  private readonly received;

  constructor(
    private readonly jetstream: JetStreamService,
    metrics: Metrics,
  ) {
    this.received = metrics.counter(
      'edm_bus_events_received_total',
      'Events received from the bus, by type.',
      ['type'],
    );
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.jetstream.consume({ durable: 'webhook-ingest' }, (event) => this.handle(event));
  }

  private async handle(event: DomainEvent): Promise<AckDecision> {
    this.received.inc({ type: event.type });
    return ack();
  }
}
