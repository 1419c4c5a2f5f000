import { Inject, Injectable, OnApplicationBootstrap, Optional } from '@nestjs/common';
import { DomainEvent, EventType } from '@edm/events';
import { ack, AckDecision, JetStreamService } from '@edm/messaging';
import { Metrics } from '@edm/observability';
import { SERVICE_NAME } from './platform.module';

/**
 * Narrows a service's bus consumer to the one event type it acts on (NATS 2.9 takes one subject
 * filter per consumer), so it neither receives nor acknowledges the rest of the traffic.
 */
export const BUS_EVENT_TYPE = Symbol('BUS_EVENT_TYPE');

/**
 * A service's durable consumer, named after the service: of every event, or of the one type
 * provided as BUS_EVENT_TYPE. It counts what it receives; the services' own handlers (wake-ups,
 * health state) hang off it.
 */
@Injectable()
export class EventBusSubscriber implements OnApplicationBootstrap {
  private readonly received;
  private readonly listeners: ((event: DomainEvent) => Promise<void> | void)[] = [];

  constructor(
    private readonly jetstream: JetStreamService,
    @Inject(SERVICE_NAME) private readonly service: string,
    metrics: Metrics,
    @Optional() @Inject(BUS_EVENT_TYPE) private readonly only?: Exclude<EventType, 'MailEventRecorded'>,
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
    await this.jetstream.consume(
      { durable: this.service, filterSubject: this.only && this.jetstream.subjectOfType(this.only) },
      (event) => this.handle(event),
    );
  }

  private async handle(event: DomainEvent): Promise<AckDecision> {
    this.received.inc({ type: event.type });
    for (const listener of this.listeners) await listener(event);
    return ack();
  }
}
