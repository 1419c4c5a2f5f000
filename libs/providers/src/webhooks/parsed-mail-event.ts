import type { MailEventType } from '@edm/domain';

/** Providers whose webhooks we parse. `sandbox` is our own load-test provider. */
export const WEBHOOK_PROVIDERS = ['engagelab', 'sendgrid', 'mailgun', 'ses', 'postmark', 'sandbox'] as const;

export type WebhookProvider = (typeof WEBHOOK_PROVIDERS)[number];

export const isWebhookProvider = (value: unknown): value is WebhookProvider =>
  typeof value === 'string' && (WEBHOOK_PROVIDERS as readonly string[]).includes(value);

/** Request headers as frameworks hand them over; lookups are case-insensitive. */
export type WebhookHeaders = Readonly<Record<string, string | readonly string[] | undefined>>;

/** One provider event for one recipient, in our vocabulary, with every id correlation may use. */
export interface ParsedMailEvent {
  provider: WebhookProvider;
  /** The provider's own id of this event, when it sends one. */
  providerEventId?: string;
  /** The provider's type field, verbatim. */
  rawType: string;
  /** `null`: stored and counted, but no normalised meaning (e.g. SendGrid group_resubscribe). */
  type: MailEventType | null;
  /** Lower-cased address. */
  recipient?: string;
  occurredAt: Date;
  /** The provider's message id, angle brackets stripped (SendGrid: the part before the first '.'). */
  providerMessageId?: string;
  /** Every form of the provider message id a sender may have saved, most specific first. */
  messageIdCandidates: string[];
  /** Our id, echoed as custom arg / metadata / tag `edm_tracking_id` or header `X-EDM-Tracking-Id`. */
  trackingId?: string;
  /** Our task id, echoed as custom arg `edm_task_id`. */
  taskId?: string;
  /** The RFC 5322 Message-ID echoed in the event's copy of the headers. */
  headerMessageId?: string;
  customArgs: Record<string, string>;
  url?: string;
  reason?: string;
  /** The address was already suppressed (the provider did not try); not a new bounce or complaint. */
  suppression: boolean;
  /** Provider-namespaced; the provider's event id when it has a unique one, else a body hash. */
  dedupeKey: string;
}

/** An entry of a batch that could not be read; the rest of the batch still counts. */
export interface RejectedWebhookEntry {
  index: number;
  reason: string;
}

export type SnsSubscriptionMessageType = 'SubscriptionConfirmation' | 'UnsubscribeConfirmation';

export type ParseWebhookResult =
  | { kind: 'events'; events: ParsedMailEvent[]; rejected: RejectedWebhookEntry[] }
  | {
      kind: 'sns-subscription';
      messageType: SnsSubscriptionMessageType;
      subscribeUrl: string;
      topicArn: string;
      token?: string;
    }
  | { kind: 'invalid'; reason: string };
