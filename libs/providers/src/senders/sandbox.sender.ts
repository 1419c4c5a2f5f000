import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import { errorMessage } from './error-message';
import { basicAuthorization, httpUrlSchema } from './http-sender-support';
import { FailedSendOutcome, MailSender, OutgoingMail, SendOutcome } from './mail-sender';
import { SandboxAcceptance, SandboxMailbox } from './sandbox-mailbox';
import { sendHttpRequest } from './send-http-request';

export const SANDBOX_CALLBACK_EVENT_TYPES = [
  'delivered',
  'open',
  'click',
  'soft_bounce',
  'hard_bounce',
  'complaint',
  'unsubscribe',
] as const;

export type SandboxCallbackEventType = (typeof SANDBOX_CALLBACK_EVENT_TYPES)[number];

export interface SandboxCallbackEvent {
  /** `<providerMessageId>:<type>`: the same for every retry of the POST, so the receiver can deduplicate. */
  eventId: string;
  type: SandboxCallbackEventType;
  trackingId: string;
  messageId: string;
  email: string;
  /** Milliseconds since the epoch. */
  timestamp: number;
  url?: string;
  taskId: string;
}

/** The body POSTed to `callbackUrl`. */
export interface SandboxCallbackPayload {
  events: SandboxCallbackEvent[];
}

const probability = z.number().min(0).max(1);

export const sandboxConfigSchema = {
  credentials: z.object({}).prefault({}),
  options: z
    .looseObject({
      latencyMs: z.number().int().min(0).max(60_000).default(0),
      transientRate: probability.default(0),
      permanentRate: probability.default(0),
      accountErrorRate: probability.default(0),
      ambiguousRate: probability.default(0),
      /**
       * The share of accepted mails that get each event. A bounce excludes every other event; an open implies
       * delivered, a click implies an open; a complaint or an unsubscribe implies delivered.
       */
      callbacks: z
        .object({
          delivered: probability.default(1),
          open: probability.default(0),
          click: probability.default(0),
          soft_bounce: probability.default(0),
          hard_bounce: probability.default(0),
          complaint: probability.default(0),
          unsubscribe: probability.default(0),
        })
        .prefault({}),
      /** Where events are POSTed; no callbacks without it. */
      callbackUrl: httpUrlSchema.optional(),
      /** Wait before each event, after acceptance and after the previous event. */
      callbackDelayMs: z.number().int().min(0).max(3_600_000).default(1_000),
    })
    .refine(
      (options) =>
        options.transientRate + options.permanentRate + options.accountErrorRate + options.ambiguousRate <= 1,
      { message: 'the error rates add up to more than 1', path: ['transientRate'] },
    )
    .refine((options) => options.callbacks.hard_bounce + options.callbacks.soft_bounce <= 1, {
      message: 'the bounce probabilities add up to more than 1',
      path: ['callbacks', 'hard_bounce'],
    })
    .prefault({}),
};

export type SandboxOptions = z.output<typeof sandboxConfigSchema.options>;

export interface SandboxCallbackFailure {
  event: SandboxCallbackEvent;
  attempts: number;
  reason: string;
}

export interface SandboxSenderDeps {
  mailbox: SandboxMailbox;
  /** Uniform in [0, 1); pass a seeded one (see `seededRandom`) for a reproducible run. */
  random?: () => number;
  now?: () => number;
  /** Waits between attempts of one callback POST. */
  callbackRetryDelaysMs?: readonly number[];
  /** Called when a callback was given up on. */
  onCallbackFailure?: (failure: SandboxCallbackFailure) => void;
}

export interface SandboxSenderConfig {
  credentials?: z.input<typeof sandboxConfigSchema.credentials>;
  options?: z.input<typeof sandboxConfigSchema.options>;
}

/** Refusals happen before the mail is accepted, so nothing reaches the mailbox. */
const SIMULATED_REFUSALS = {
  transient: { kind: 'transient', reason: 'sandbox: simulated 503 Service Unavailable' },
  permanent: { kind: 'permanent', reason: 'sandbox: simulated invalid recipient address' },
  account: { kind: 'account', reason: 'sandbox: simulated account suspension' },
} as const satisfies Record<string, FailedSendOutcome>;

const CALLBACK_TIMEOUT_MS = 10_000;
const DEFAULT_CALLBACK_RETRY_DELAYS_MS = [500, 1_000, 2_000, 4_000, 8_000];

/**
 * A provider that sends nowhere: it waits `latencyMs`, fails at the configured rates, accepts into a mailbox
 * (idempotently), and then reports delivery events to `callbackUrl` the way a real provider's webhooks would.
 */
export class SandboxSender implements MailSender {
  readonly supportsIdempotency = true;
  private readonly options: SandboxOptions;
  private readonly mailbox: SandboxMailbox;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly retryDelaysMs: readonly number[];
  private readonly onCallbackFailure: (failure: SandboxCallbackFailure) => void;
  private readonly pendingCallbacks = new Set<Promise<void>>();
  private readonly closing = new AbortController();

  constructor(config: SandboxSenderConfig, deps: SandboxSenderDeps) {
    sandboxConfigSchema.credentials.parse(config.credentials);
    this.options = sandboxConfigSchema.options.parse(config.options);
    this.mailbox = deps.mailbox;
    this.random = deps.random ?? Math.random;
    this.now = deps.now ?? Date.now;
    this.retryDelaysMs = deps.callbackRetryDelaysMs ?? DEFAULT_CALLBACK_RETRY_DELAYS_MS;
    this.onCallbackFailure = deps.onCallbackFailure ?? warnAboutCallbackFailure;
  }

  async send(mail: OutgoingMail, signal?: AbortSignal): Promise<SendOutcome> {
    // Every random draw happens here, synchronously, so concurrent sends consume a seeded sequence in call order.
    const fate = this.drawFate();
    const events = planCallbackEvents(this.options.callbacks, this.random);
    try {
      if (this.options.latencyMs > 0) await delay(this.options.latencyMs, undefined, { signal });
    } catch {
      return { kind: 'transient', reason: 'sandbox: aborted before the mail was accepted', notSent: true };
    }
    if (fate === 'transient' || fate === 'permanent' || fate === 'account') {
      return { ...SIMULATED_REFUSALS[fate] };
    }

    let acceptance: SandboxAcceptance;
    try {
      acceptance = await this.mailbox.accept(mail);
    } catch (error) {
      // The mailbox may have committed before failing; the key makes a retry safe either way.
      return { kind: 'ambiguous', reason: `sandbox: mailbox failed: ${errorMessage(error)}` };
    }
    if (!acceptance.duplicate) this.scheduleCallbacks(mail, acceptance.providerMessageId, events);
    if (fate === 'ambiguous') {
      return { kind: 'ambiguous', reason: 'sandbox: simulated connection loss after sending' };
    }
    return { kind: 'sent', providerMessageId: acceptance.providerMessageId };
  }

  /** Resolves once every callback scheduled so far was delivered or given up on. */
  async callbacksSettled(): Promise<void> {
    while (this.pendingCallbacks.size > 0) await Promise.allSettled([...this.pendingCallbacks]);
  }

  /** Stops pending callbacks (at shutdown); sends are unaffected. */
  close(): void {
    this.closing.abort();
  }

  private drawFate(): 'transient' | 'permanent' | 'account' | 'ambiguous' | 'sent' {
    const draw = this.random();
    const { transientRate, permanentRate, accountErrorRate, ambiguousRate } = this.options;
    if (draw < transientRate) return 'transient';
    if (draw < transientRate + permanentRate) return 'permanent';
    if (draw < transientRate + permanentRate + accountErrorRate) return 'account';
    if (draw < transientRate + permanentRate + accountErrorRate + ambiguousRate) return 'ambiguous';
    return 'sent';
  }

  private scheduleCallbacks(
    mail: OutgoingMail,
    providerMessageId: string,
    types: SandboxCallbackEventType[],
  ): void {
    const { callbackUrl } = this.options;
    if (!callbackUrl || types.length === 0) return;
    const pending = this.reportEvents(callbackUrl, mail, providerMessageId, types).finally(() =>
      this.pendingCallbacks.delete(pending),
    );
    this.pendingCallbacks.add(pending);
  }

  /** One POST per event, in order, so that a receiver sees delivered before open before click. */
  private async reportEvents(
    callbackUrl: string,
    mail: OutgoingMail,
    providerMessageId: string,
    types: SandboxCallbackEventType[],
  ): Promise<void> {
    const url = firstLink(mail.html);
    for (const type of types) {
      if (!(await this.pause(this.options.callbackDelayMs))) return;
      const event: SandboxCallbackEvent = {
        eventId: `${providerMessageId}:${type}`,
        type,
        trackingId: mail.trackingId,
        messageId: providerMessageId,
        email: mail.to.email,
        timestamp: this.now(),
        ...(type === 'click' && url !== undefined && { url }),
        taskId: mail.taskId,
      };
      if (!(await this.post(callbackUrl, event))) return;
    }
  }

  /** Posts one event with retries; false when given up on (the later events would arrive out of order). */
  private async post(callbackUrl: string, event: SandboxCallbackEvent): Promise<boolean> {
    const target = withoutCredentials(callbackUrl);
    const body = JSON.stringify({ events: [event] } satisfies SandboxCallbackPayload);
    let reason = '';
    for (let attempt = 0; attempt <= this.retryDelaysMs.length; attempt++) {
      if (attempt > 0 && !(await this.pause(this.retryDelaysMs[attempt - 1]))) return false;
      const exchange = await sendHttpRequest({
        url: target.url,
        headers: { 'content-type': 'application/json', 'user-agent': 'edm-sandbox', ...target.headers },
        body,
        timeoutMs: CALLBACK_TIMEOUT_MS,
        signal: this.closing.signal,
      });
      if (exchange.kind === 'answered' && exchange.status >= 200 && exchange.status < 300) return true;
      if (this.closing.signal.aborted) return false;
      reason = exchange.kind === 'answered' ? `HTTP ${exchange.status}` : exchange.failure.reason;
    }
    this.onCallbackFailure({ event, attempts: this.retryDelaysMs.length + 1, reason });
    return false;
  }

  /** False when the sender was closed during the pause. */
  private async pause(ms: number): Promise<boolean> {
    try {
      await delay(ms, undefined, { signal: this.closing.signal });
      return true;
    } catch {
      return false;
    }
  }
}

/**
 * Decides up front which events an accepted mail will produce. Always draws the same number of values, so a
 * seeded run stays reproducible whatever the outcome.
 */
function planCallbackEvents(
  probabilities: SandboxOptions['callbacks'],
  random: () => number,
): SandboxCallbackEventType[] {
  const [bounce, delivered, open, click, complaint, unsubscribe] = Array.from({ length: 6 }, () => random());
  if (bounce < probabilities.hard_bounce) return ['hard_bounce'];
  if (bounce < probabilities.hard_bounce + probabilities.soft_bounce) return ['soft_bounce'];
  const clicked = click < probabilities.click;
  const opened = clicked || open < probabilities.open;
  const complained = complaint < probabilities.complaint;
  const unsubscribed = unsubscribe < probabilities.unsubscribe;
  const wasDelivered = opened || complained || unsubscribed || delivered < probabilities.delivered;
  const plan: [SandboxCallbackEventType, boolean][] = [
    ['delivered', wasDelivered],
    ['open', opened],
    ['click', clicked],
    ['unsubscribe', unsubscribed],
    ['complaint', complained],
  ];
  return plan.filter(([, happens]) => happens).map(([type]) => type);
}

function firstLink(html: string | undefined): string | undefined {
  return html?.match(/href\s*=\s*["'](https?:\/\/[^"']+)["']/i)?.[1];
}

/** fetch refuses URLs with credentials; they become a Basic authorization header instead. */
function withoutCredentials(callbackUrl: string): { url: string; headers: Record<string, string> } {
  const url = new URL(callbackUrl);
  if (!url.username && !url.password) return { url: callbackUrl, headers: {} };
  const authorization = basicAuthorization(
    decodeURIComponent(url.username),
    decodeURIComponent(url.password),
  );
  url.username = '';
  url.password = '';
  return { url: url.toString(), headers: { authorization } };
}

function warnAboutCallbackFailure({ event, attempts, reason }: SandboxCallbackFailure): void {
  process.emitWarning(
    `sandbox callback ${event.eventId} given up after ${attempts} attempts: ${reason}`,
    'SandboxCallbackWarning',
  );
}

/** A small seeded generator (mulberry32), uniform in [0, 1), for reproducible sandbox runs. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
