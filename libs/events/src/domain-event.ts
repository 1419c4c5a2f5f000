import { z } from 'zod';
import { EventData, eventDataSchemas, EventType } from './event-data.schemas';

export interface EventMetadata {
  correlationId: string;
  causationId: string | null;
  traceparent?: string;
  /** Who caused it: an API key id, a service replica, the monitor. */
  actor?: string;
}

/** A stored event: what the store returns and what travels over NATS. */
export type DomainEvent<T extends EventType = EventType> = {
  [K in T]: {
    id: string;
    type: K;
    streamId: string;
    version: number;
    occurredAt: string;
    data: EventData<K>;
    metadata: EventMetadata;
  };
}[T];

/** An event about to be appended: the store gives it its id, version and time. */
export type NewEvent<T extends EventType = EventType> = {
  [K in T]: { type: K; data: EventData<K> };
}[T];

export const newEvent = <K extends EventType>(type: K, data: EventData<K>): NewEvent<K> =>
  ({ type, data }) as NewEvent<K>;

const metadataSchema = z.object({
  correlationId: z.string(),
  causationId: z.string().nullable(),
  traceparent: z.string().optional(),
  actor: z.string().optional(),
});

const envelopeSchema = z.object({
  id: z.string().uuid(),
  type: z.string(),
  streamId: z.string().min(1),
  version: z.number().int().positive(),
  occurredAt: z.string(),
  data: z.unknown(),
  metadata: metadataSchema,
});

export class InvalidEventError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidEventError';
  }
}

export const isEventType = (value: string): value is EventType => Object.hasOwn(eventDataSchemas, value);

/** Validates a payload received from the bus; anything malformed is an InvalidEventError. */
export function parseDomainEvent(payload: unknown): DomainEvent {
  const envelope = envelopeSchema.safeParse(payload);
  if (!envelope.success) throw new InvalidEventError(`bad envelope: ${envelope.error.issues[0]?.message}`);
  const { type } = envelope.data;
  if (!isEventType(type)) throw new InvalidEventError(`unknown event type ${type}`);
  const data = eventDataSchemas[type].safeParse(envelope.data.data);
  if (!data.success) throw new InvalidEventError(`bad ${type} data: ${data.error.issues[0]?.message}`);
  return { ...envelope.data, type, data: data.data } as DomainEvent;
}

export const isEvent = <K extends EventType>(
  event: DomainEvent,
  type: K,
): event is Extract<DomainEvent, { type: K }> => event.type === type;
