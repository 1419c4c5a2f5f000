import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  JetStreamApiError,
  jetstreamManager,
  JetStreamClient,
  JetStreamManager,
  JsMsg,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { createInbox, headers, Msg, nanos, NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import {
  DomainEvent,
  EventType,
  InvalidEventError,
  MailEventRecordType,
  parseDomainEvent,
  subjectFor,
  subjectOf,
  subjectOfStored,
} from '@edm/events';
import { AckDecision, redeliveryDelay } from './ack-decision';

/** How long a handled message may wait for its ack, so that acks leave together. */
const ACK_GROUP_MS = 10;

export interface JetStreamOptions {
  servers: string;
  stream: string;
  subjectPrefix: string;
  duplicateWindowMs: number;
  name: string;
  log: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
}

export interface ConsumerSpec {
  durable: string;
  /** One subject filter (NATS 2.9 takes one per consumer); default: every event. */
  filterSubject?: string;
  maxDeliver?: number;
  ackWaitMs?: number;
}

export interface MessageContext {
  deliveryCount: number;
  streamSequence: number;
  /** Tells the server the handler is still busy, so the message is not redelivered meanwhile. */
  working(): void;
}

export type EventHandler = (event: DomainEvent, context: MessageContext) => Promise<AckDecision>;

/** An event ready to publish: its subject, its JSON text and its id (the dedup id). */
export interface OutgoingMessage {
  subject: string;
  payload: string;
  msgId: string;
}

interface PendingAck {
  resolve: (ack: { duplicate: boolean; seq: number }) => void;
  reject: (error: Error) => void;
}

export interface ConsumerStats {
  handled: number;
  acked: number;
  naked: number;
  termed: number;
}

/**
 * Our small layer over the v3 NATS client: one connection that reconnects forever, idempotent
 * stream and consumer provisioning, publishing with the event id as the dedup id, and durable
 * pull consumers whose handlers decide explicitly how each message is acknowledged.
 */
export class JetStreamService {
  private nc?: NatsConnection;
  private js?: JetStreamClient;
  private jsm?: JetStreamManager;
  private readonly stops: (() => Promise<void>)[] = [];
  readonly stats = new Map<string, ConsumerStats>();
  /** Publish acknowledgements of publishMany, on one inbox subscription of this connection. */
  private acks?: { inbox: string; pending: Map<string, PendingAck>; next: number };

  constructor(private readonly options: JetStreamOptions) {}

  get connection(): NatsConnection {
    if (!this.nc) throw new Error('NATS is not connected');
    return this.nc;
  }

  get allSubjects(): string {
    return `${this.options.subjectPrefix}.>`;
  }

  subject(event: DomainEvent): string {
    return subjectOf(this.options.subjectPrefix, event);
  }

  /** The one subject every event of `type` is published on (not for recorded provider events). */
  subjectOfType(type: Exclude<EventType, MailEventRecordType>): string {
    return subjectFor(this.options.subjectPrefix, type);
  }

  /** The subject of a stored event, from its type (and for recorded provider events their type). */
  subjectOfStored(type: EventType, mailEventType: string | null): string {
    return subjectOfStored(this.options.subjectPrefix, type, mailEventType);
  }

  /** Every subject of one aggregate's events (`task`, `service`, `subtask`, ...). */
  subjectsOfAggregate(aggregate: string): string {
    return `${this.options.subjectPrefix}.${aggregate}.>`;
  }

  async connect(): Promise<void> {
    const nc = await connect({
      servers: this.options.servers.split(','),
      name: this.options.name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      waitOnFirstConnect: true,
      timeout: 5_000,
      // Every publish is a request; capturing a stack for each costs more than the publish.
      noAsyncTraces: true,
    });
    this.nc = nc;
    void this.watchStatus(nc);
    this.js = jetstream(nc, { timeout: 10_000 });
    this.jsm = await jetstreamManager(nc, { timeout: 10_000 });
    await this.ensureStream();
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect') this.abandonPendingAcks();
      if (status.type === 'disconnect' || status.type === 'reconnect' || status.type === 'error') {
        this.options.log(status.type === 'reconnect' ? 'info' : 'warn', `nats ${status.type}`, {
          nats: status.type,
        });
      }
    }
  }

  isConnected(): boolean {
    return !!this.nc && !this.nc.isClosed() && !this.nc.isDraining() && this.nc.info !== undefined;
  }

  /** Creates the stream, or brings its settings up to date: every service calls this at boot. */
  async ensureStream(): Promise<void> {
    const config = {
      name: this.options.stream,
      subjects: [this.allSubjects],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      duplicate_window: nanos(this.options.duplicateWindowMs),
      max_age: nanos(30 * 24 * 3_600_000),
      num_replicas: 1,
    };
    const jsm = this.manager();
    try {
      await jsm.streams.info(this.options.stream);
      await jsm.streams.update(this.options.stream, {
        subjects: config.subjects,
        duplicate_window: config.duplicate_window,
        max_age: config.max_age,
      });
    } catch (error) {
      if (!isNotFound(error)) throw error;
      try {
        await jsm.streams.add(config);
      } catch (addError) {
        // Another process created it between our look and our add.
        if (!(await this.streamExists())) throw addError;
      }
    }
  }

  async streamExists(): Promise<boolean> {
    try {
      await this.manager().streams.info(this.options.stream);
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  async streamInfo() {
    return this.manager().streams.info(this.options.stream);
  }

  /**
   * Creates the durable consumer, or updates the settings that may change in place. A consumer
   * whose subject filter changed is deleted and created again (from the stream's start).
   */
  async ensureConsumer(spec: ConsumerSpec): Promise<void> {
    const config = {
      durable_name: spec.durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: spec.filterSubject ?? this.allSubjects,
      max_deliver: spec.maxDeliver ?? -1,
      ack_wait: nanos(spec.ackWaitMs ?? 30_000),
      max_ack_pending: 1_000,
    };
    const jsm = this.manager();
    const existing = await jsm.consumers.info(this.options.stream, spec.durable).catch((error: unknown) => {
      if (isNotFound(error)) return undefined;
      throw error;
    });
    if (existing && existing.config.filter_subject !== config.filter_subject) {
      this.options.log('info', 'consumer subject filter changed; recreating the consumer', {
        durable: spec.durable,
        from: existing.config.filter_subject ?? null,
        to: config.filter_subject,
      });
      await jsm.consumers.delete(this.options.stream, spec.durable).catch((error: unknown) => {
        if (!isNotFound(error)) throw error;
      });
    } else if (existing) {
      await jsm.consumers.update(this.options.stream, spec.durable, {
        ack_wait: config.ack_wait,
        max_deliver: config.max_deliver,
        max_ack_pending: config.max_ack_pending,
      });
      return;
    }
    await jsm.consumers.add(this.options.stream, config).catch(async (addError: unknown) => {
      const exists = await jsm.consumers.info(this.options.stream, spec.durable).then(
        () => true,
        () => false,
      );
      if (!exists) throw addError;
    });
  }

  /**
   * Deletes the durable consumers named `owner` or `owner-…` that are not in `keep`: a service
   * whose consumers changed leaves none behind to pile up messages nobody takes.
   */
  async retireConsumers(owner: string, keep: readonly string[]): Promise<string[]> {
    const retired: string[] = [];
    const jsm = this.manager();
    for await (const info of jsm.consumers.list(this.options.stream)) {
      const name = info.config.durable_name ?? info.name;
      if ((name !== owner && !name.startsWith(`${owner}-`)) || keep.includes(name)) continue;
      await jsm.consumers.delete(this.options.stream, name).catch((error: unknown) => {
        if (!isNotFound(error)) throw error;
      });
      this.options.log('info', 'consumer no longer used; deleted', { durable: name });
      retired.push(name);
    }
    return retired;
  }

  /** Messages a durable consumer has yet to take or acknowledge; 0 for one not created yet. */
  async consumerPending(durable: string): Promise<number> {
    try {
      const info = await this.manager().consumers.info(this.options.stream, durable);
      return info.num_pending + info.num_ack_pending;
    } catch (error) {
      if (isNotFound(error)) return 0;
      throw error;
    }
  }

  /** Publishes with Nats-Msg-Id = event id, so a republished event is dropped by the server. */
  async publish(event: DomainEvent): Promise<{ duplicate: boolean; seq: number }> {
    const [ack] = await this.publishMany([
      { subject: this.subject(event), payload: JSON.stringify(event), msgId: event.id },
    ]);
    return ack;
  }

  /**
   * Publishes a batch, pipelined, each with its Nats-Msg-Id, and resolves with each stored
   * message's sequence once the stream acknowledged it (rejects if any was refused or not
   * acknowledged within `timeoutMs`). The same protocol as the client's JetStream publish (a
   * request whose reply is the stream's PubAck), with the replies taken by one subscription
   * instead of one request each: the client builds an Error for every request it settles, which
   * cost the outbox relay more than its publishing did.
   */
  publishMany(
    messages: readonly OutgoingMessage[],
    timeoutMs = 10_000,
  ): Promise<{ duplicate: boolean; seq: number }[]> {
    // While the client reconnects it would hold the messages and drop them at the next dial:
    // their acknowledgements could never come, so the publisher learns it now, not at the timeout.
    if (!this.isConnected()) return Promise.reject(new Error('NATS is not connected'));
    const acks = this.ackInbox();
    const tokens: string[] = [];
    const settled = messages.map((message) => {
      const token = String((acks.next += 1));
      tokens.push(token);
      const done = new Promise<{ duplicate: boolean; seq: number }>((resolve, reject) =>
        acks.pending.set(token, { resolve, reject }),
      );
      const h = headers();
      h.set('Nats-Msg-Id', message.msgId);
      this.connection.publish(message.subject, message.payload, {
        reply: `${acks.inbox}.${token}`,
        headers: h,
      });
      return done;
    });
    const timer = setTimeout(() => {
      for (const token of tokens) {
        const waiting = acks.pending.get(token);
        acks.pending.delete(token);
        waiting?.reject(new Error(`no acknowledgement from the stream within ${timeoutMs} ms`));
      }
    }, timeoutMs);
    return Promise.all(settled).finally(() => clearTimeout(timer));
  }

  /**
   * The connection broke: acknowledgements still awaited can no longer arrive, whether or not the
   * server stored the message. They fail now rather than at their timeout; the publisher
   * publishes again, and the Nats-Msg-Id drops whatever the server had already stored.
   */
  private abandonPendingAcks(): void {
    if (!this.acks) return;
    const waiting = [...this.acks.pending.values()];
    this.acks.pending.clear();
    const error = new Error('NATS connection lost before the stream acknowledged the publish');
    for (const w of waiting) w.reject(error);
  }

  private ackInbox(): NonNullable<JetStreamService['acks']> {
    if (this.acks) return this.acks;
    const inbox = createInbox();
    const pending = new Map<string, PendingAck>();
    this.connection.subscribe(`${inbox}.*`, {
      callback: (error, msg: Msg) => {
        if (error) return;
        const token = msg.subject.slice(inbox.length + 1);
        const waiting = pending.get(token);
        if (!waiting) return;
        pending.delete(token);
        if (msg.headers?.code === 503) return waiting.reject(new Error('no stream takes this subject'));
        try {
          const answer = msg.json<{ seq?: number; duplicate?: boolean; error?: { description?: string } }>();
          if (answer.error || typeof answer.seq !== 'number')
            waiting.reject(new Error(`publish refused: ${answer.error?.description ?? 'no sequence'}`));
          else waiting.resolve({ seq: answer.seq, duplicate: answer.duplicate === true });
        } catch (parseError) {
          waiting.reject(parseError as Error);
        }
      },
    });
    this.acks = { inbox, pending, next: 0 };
    return this.acks;
  }

  /**
   * Runs a durable pull consumer until stop(). Invalid payloads are terminated (they can never
   * succeed) and logged; a handler that throws is nak'ed with backoff, never terminated.
   */
  async consume(spec: ConsumerSpec, handler: EventHandler): Promise<void> {
    await this.ensureConsumer(spec);
    const stats: ConsumerStats = { handled: 0, acked: 0, naked: 0, termed: 0 };
    this.stats.set(spec.durable, stats);
    const consumer = await this.client().consumers.get(this.options.stream, spec.durable);
    const messages = await consumer.consume({ max_messages: 256, expires: 5_000 });
    // Settled in groups, at most ACK_GROUP_MS after the handler decided: each ack is a message to
    // the server, and acks sent together leave in one socket write instead of one write each.
    let unsettled: [JsMsg, AckDecision][] = [];
    const settleAll = () => {
      const group = unsettled;
      unsettled = [];
      for (const [msg, decision] of group) this.settle(msg, decision, stats, spec.durable);
    };
    const loop = (async () => {
      for await (const msg of messages) {
        stats.handled += 1;
        const decision = await this.decide(msg, handler);
        if (unsettled.push([msg, decision]) === 1) setTimeout(settleAll, ACK_GROUP_MS);
      }
    })();
    this.stops.push(async () => {
      await messages.close();
      await loop.catch(() => undefined);
      settleAll();
    });
  }

  private async decide(msg: JsMsg, handler: EventHandler): Promise<AckDecision> {
    let event: DomainEvent;
    try {
      event = parseDomainEvent(msg.json());
    } catch (error) {
      const reason = error instanceof InvalidEventError ? error.message : 'payload is not JSON';
      return { kind: 'term', reason };
    }
    try {
      return await handler(event, {
        deliveryCount: msg.info.deliveryCount,
        streamSequence: msg.seq,
        working: () => msg.working(),
      });
    } catch (error) {
      return { kind: 'nak', delayMs: redeliveryDelay(msg.info.deliveryCount), reason: String(error) };
    }
  }

  private settle(msg: JsMsg, decision: AckDecision, stats: ConsumerStats, durable: string): void {
    switch (decision.kind) {
      case 'ack':
        stats.acked += 1;
        msg.ack();
        return;
      case 'nak':
        stats.naked += 1;
        this.options.log('warn', 'message will be redelivered', {
          durable,
          seq: msg.seq,
          reason: decision.reason,
        });
        msg.nak(decision.delayMs);
        return;
      case 'term':
        stats.termed += 1;
        this.options.log('error', 'message terminated', { durable, seq: msg.seq, reason: decision.reason });
        msg.term(decision.reason);
        return;
    }
  }

  /** Stops consuming, lets in-flight publishes and acks flush, then closes. */
  async drain(): Promise<void> {
    await Promise.all(this.stops.splice(0).map((stop) => stop()));
    if (this.nc && !this.nc.isClosed()) await this.nc.drain().catch(() => this.nc?.close());
  }

  private client(): JetStreamClient {
    if (!this.js) throw new Error('JetStream is not connected');
    return this.js;
  }

  private manager(): JetStreamManager {
    if (!this.jsm) throw new Error('JetStream is not connected');
    return this.jsm;
  }
}

const isNotFound = (error: unknown): boolean =>
  error instanceof JetStreamApiError &&
  (error.status === 404 || error.code === 10059 || error.code === 10014);
