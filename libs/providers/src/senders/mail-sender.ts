export interface MailAddress {
  email: string;
  name?: string;
}

/** One mail to one recipient, with everything a provider needs to send it and to let us correlate it later. */
export interface OutgoingMail {
  trackingId: string;
  taskId: string;
  subTaskId: string;
  /** Stable across retries of the same sub-task, so a provider that deduplicates can recognise a resend. */
  idempotencyKey: string;
  from: MailAddress;
  to: MailAddress;
  subject: string;
  html?: string;
  text?: string;
  /** Our own RFC 5322 Message-ID, e.g. `<trackingId@domain>`. */
  messageId: string;
  /** Includes X-EDM-Tracking-Id, List-Unsubscribe and List-Unsubscribe-Post. */
  headers: Record<string, string>;
  /** Includes edm_tracking_id and edm_task_id; echoed back by the provider's webhooks. */
  customArgs: Record<string, string>;
}

/**
 * What became of one send attempt. The dispatcher maps each kind to one sub-task transition (SPEC 3.2):
 * - `sent`: the provider accepted the mail.
 * - `transient`: the provider did not take it (nothing reached it, 429, 5xx); retry later. `notSent`:
 *   nothing of the mail reached the provider, so it cannot have counted it against a quota.
 * - `permanent`: the recipient can never be reached this way (invalid address, inactive recipient).
 * - `account`: the sending account cannot send at all (auth, quota, suspension); freeze the service.
 * - `ambiguous`: the request left us but the answer was lost; the provider may have accepted it.
 */
export type SendOutcome =
  | { kind: 'sent'; providerMessageId: string }
  | { kind: 'transient'; reason: string; retryAfterMs?: number; notSent?: true }
  | { kind: 'permanent'; reason: string }
  | { kind: 'account'; reason: string }
  | { kind: 'ambiguous'; reason: string };

export type SendOutcomeKind = SendOutcome['kind'];

export type FailedSendOutcome = Exclude<SendOutcome, { kind: 'sent' }>;

export interface MailSender {
  /**
   * True when resending the same `idempotencyKey` can never deliver twice, so an `ambiguous` outcome may be
   * retried automatically.
   */
  readonly supportsIdempotency: boolean;
  /** Never rejects: every failure is classified into a SendOutcome. */
  send(message: OutgoingMail, signal?: AbortSignal): Promise<SendOutcome>;
}

/** `Name <email>` when there is a name, the bare address otherwise. */
export const formatAddress = (address: MailAddress): string =>
  address.name ? `${quoteDisplayName(address.name)} <${address.email}>` : address.email;

const quoteDisplayName = (name: string): string =>
  /^[\w !#$%&'*+\-/=?^`{|}~]*$/.test(name) ? name : `"${name.replace(/(["\\])/g, '\\$1')}"`;
