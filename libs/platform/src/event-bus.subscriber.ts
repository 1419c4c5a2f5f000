import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { DomainEvent, EventType, MailEventRecordType } from '@edm/events';
import { ack, AckDecision, JetStreamService } from '@edm/messaging';
import { Metrics } from '@edm/observability';
import { SERVICE_NAME } from './platform.module';

/** What one durable consumer takes: one event type, every event of one aggregate, or everything. */
export type BusFilter =
  { type: Exclude<EventType, MailEventRecordType> } | { aggregate: 'task' | 'service' } | 'all';

export interface BusSubscription {
  durable: string;
  filter: BusFilter;
}

/**
 * Every service's durable consumers on the bus, in one place (the monitor watches their lag).
 * NATS 2.9 takes one subject filter per consumer, so a service that acts on a few kinds of event
 * has one consumer per kind rather than one receiving everything: the dispatcher, woken only by
 * task, service and sub-task-back-to-pending events, would otherwise receive and acknowledge the
 * three lifecycle events of every mail it sends.
 */
export const BUS_SUBSCRIPTIONS: Readonly<Record<string, readonly BusSubscription[]>> = {
  dispatcher: [
    { durable: 'dispatcher-task', filter: { aggregate: 'task' } },
    { durable: 'dispatcher-service', filter: { aggregate: 'service' } },
    { durable: 'dispatcher-released', filter: { type: 'SubTaskReleased' } },
    { durable: 'dispatcher-retry', filter: { type: 'SubTaskRetryScheduled' } },
  ],
  // Only sends matter to ingest (an event may have outrun the record of its send).
  'webhook-ingest': [{ durable: 'webhook-ingest', filter: { type: 'SubTaskBatchSent' } }],
  monitor: [{ durable: 'monitor', filter: 'all' }],
};

/** The subject filter of a subscription, for the stream's subject prefix. */
export function filterSubject(jetstream: JetStreamService, filter: BusFilter): string {
  if (filter === 'all') return jetstream.allSubjects;
  return 'type' in filter
    ? jetstream.subjectOfType(filter.type)
    : jetstream.subjectsOfAggregate(filter.aggregate);
}

/**
 * A service's durable consumers, as BUS_SUBSCRIPTIONS names them; consumers of the service no
 * longer listed there are deleted at start. It counts what it receives; the services' own
 * handlers (wake-ups, health state) hang off it.
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
    const subscriptions = BUS_SUBSCRIPTIONS[this.service];
    if (!subscriptions) throw new Error(`no bus subscriptions for ${this.service}`);
    await this.jetstream.retireConsumers(
      this.service,
      subscriptions.map((s) => s.durable),
    );
    for (const { durable, filter } of subscriptions) {
      await this.jetstream.consume(
        { durable, filterSubject: filterSubject(this.jetstream, filter) },
        (event) => this.handle(event),
      );
    }
  }

  private async handle(event: DomainEvent): Promise<AckDecision> {
    this.received.inc({ type: event.type });
    for (const listener of this.listeners) await listener(event);
    return ack();
  }
}
