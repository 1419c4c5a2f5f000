import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { uuidv7 } from '@edm/event-store';
import { JsonLogger, Metrics } from '@edm/observability';
import { DomainError } from '@edm/platform';
import { isWebhookProvider, parseWebhook, WebhookProvider } from '@edm/providers';
import { RawIntakeWriter } from './raw-intake.writer';
import { RefreshingCache } from './refreshing-cache';
import { Verification, WebhookVerifier } from './webhook-verifier';

export interface IncomingWebhook {
  provider: string;
  serviceId: string | null;
  path: string;
  contentType: string | undefined;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

/** Media types providers send webhooks with (SNS posts JSON as text/plain). */
const ACCEPTED_TYPES = /^(application\/json|text\/plain|application\/x-www-form-urlencoded)\b/i;
/** Headers never stored: they may carry credentials. */
const SECRET_HEADERS = new Set(['authorization', 'cookie', 'proxy-authorization']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A service's row is reloaded after 5 s, and answered while it reloads for up to a minute. */
const SERVICE_CACHE = { freshMs: 5_000, staleMs: 60_000, maxEntries: 10_000 };

/**
 * Header values as single strings, each bounded: all of them for verification, and those that
 * are stored (no credentials). One pass, as it runs for every request.
 */
function flatHeaders(headers: IncomingWebhook['headers']): {
  all: Record<string, string>;
  stored: Record<string, string>;
} {
  const all: Record<string, string> = {};
  const stored: Record<string, string> = {};
  for (const key in headers) {
    const value = headers[key];
    if (value === undefined) continue;
    const flat = (Array.isArray(value) ? value.join(', ') : value).slice(0, 4_096);
    all[key] = flat;
    if (!SECRET_HEADERS.has(key)) stored[key] = flat;
  }
  return { all, stored };
}

/** The service that answers for a request (null: none named or matched), and whether it verified. */
interface Verified {
  serviceId: string | null;
  verified: boolean;
  /** An SNS message from a topic its service names (see Verification.fromOwnTopic). */
  fromOwnTopic?: true;
}

interface ServiceRow {
  id: string;
  account_id: string;
  provider: string;
  options: Record<string, unknown>;
}

/**
 * Receives one provider request: checks its shape and signature, then stores it raw before
 * anything else. Parsing and correlation happen after the answer, from the stored row, so a
 * parser bug can never lose a webhook.
 */
@Injectable()
export class WebhookIntakeService {
  private readonly requests;
  private readonly latency;
  /** Services change rarely: a few seconds of caching keeps the hot path off the database. */
  private readonly services = new RefreshingCache<string, ServiceRow | null>(
    async (id) =>
      ((
        await this.dataSource.query(
          `SELECT id, account_id, provider, options FROM sending_services WHERE id = $1`,
          [id],
        )
      )[0] as ServiceRow | undefined) ?? null,
    SERVICE_CACHE,
  );
  /** The generic EngageLab path's candidates: the EngageLab services with a webhook secret. */
  private readonly engagelabServices = new RefreshingCache<'engagelab', ServiceRow[]>(
    () =>
      this.dataSource.query(
        `SELECT id, account_id, provider, options FROM sending_services
          WHERE provider = 'engagelab' AND coalesce(options->>'webhookAppKey', '') <> ''
          ORDER BY created_at LIMIT 100`,
      ),
    SERVICE_CACHE,
  );

  constructor(
    private readonly dataSource: DataSource,
    private readonly writer: RawIntakeWriter,
    private readonly verifier: WebhookVerifier,
    private readonly logger: JsonLogger,
    metrics: Metrics,
  ) {
    this.requests = metrics.counter(
      'edm_webhook_requests_total',
      'Webhook requests by provider and answer.',
      ['provider', 'outcome'],
    );
    this.latency = metrics.histogram(
      'edm_webhook_store_seconds',
      'From request to raw row committed.',
      ['provider'],
      [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    );
  }

  /**
   * Checks, verifies and stores one request; its id once the row committed. What needs no wait
   * runs at once: only a service not yet in the cache, and an SNS certificate, are awaited.
   */
  receive(incoming: IncomingWebhook): Promise<{ id: string }> {
    const started = performance.now();
    const provider = incoming.provider;
    let committed: Promise<string>;
    try {
      committed = this.receiveChecked(incoming);
    } catch (error) {
      committed = Promise.reject(error);
    }
    return committed.then(
      (id) => {
        this.requests.inc({ provider, outcome: 'stored' });
        this.latency.observe({ provider }, (performance.now() - started) / 1_000);
        return { id };
      },
      (error: unknown) => {
        this.requests.inc({
          provider: isWebhookProvider(provider) ? provider : 'unknown',
          outcome: error instanceof DomainError ? error.code.toLowerCase() : 'unavailable',
        });
        if (error instanceof DomainError) throw error;
        this.logger.event('error', 'webhook not stored', { provider, error: String(error) });
        throw new DomainError('UNAVAILABLE', 'the webhook could not be stored; retry later');
      },
    );
  }

  /** The request's checks (thrown at once), then its verification and its row; the row's id once committed. */
  private receiveChecked(incoming: IncomingWebhook): Promise<string> {
    if (!isWebhookProvider(incoming.provider)) throw new DomainError('NOT_FOUND', 'unknown provider');
    const provider: WebhookProvider = incoming.provider;
    if (!incoming.contentType || !ACCEPTED_TYPES.test(incoming.contentType)) {
      throw new DomainError('UNSUPPORTED_MEDIA_TYPE', 'send application/json (or text/plain for SNS)');
    }
    const rawBody = typeof incoming.body === 'string' ? incoming.body : '';
    if (rawBody.trim() === '') throw new DomainError('VALIDATION_FAILED', 'empty body');
    // Postgres text cannot hold NUL, and no provider sends it: refuse rather than fail to store.
    if (rawBody.includes('\u0000'))
      throw new DomainError('VALIDATION_FAILED', 'body contains a NUL character');
    const { all: headers, stored } = flatHeaders(incoming.headers);
    const store = ({ serviceId, verified, fromOwnTopic }: Verified) => {
      const committed = this.writer.store({
        id: uuidv7(),
        source: provider,
        serviceId,
        path: incoming.path,
        headers: stored,
        rawBody,
        verified,
      });
      if (provider === 'ses' && verified)
        void committed.then(
          () => this.confirmSubscription(rawBody, headers, serviceId, fromOwnTopic === true),
          () => undefined, // not stored: answered 503, and SNS sends it again
        );
      return committed;
    };
    const answer = this.verified(provider, incoming.serviceId, rawBody, headers);
    return answer instanceof Promise ? answer.then(store) : store(answer);
  }

  /**
   * The service that answers for a request and whether its signature verified; refused (thrown)
   * when the service does not exist or the signature does not verify.
   */
  private verified(
    provider: WebhookProvider,
    serviceId: string | null,
    rawBody: string,
    headers: Record<string, string>,
  ): Verified | Promise<Verified> {
    if (serviceId !== null) {
      // Not a uuid: no such service, and no query for it.
      const service = UUID.test(serviceId) ? this.services.peek(serviceId) : null;
      if (service === undefined)
        return this.services
          .get(serviceId)
          .then((row) => this.verifiedBy(provider, row, serviceId, rawBody, headers));
      return this.verifiedBy(provider, service, serviceId, rawBody, headers);
    }
    // Only the generic EngageLab path names no service: unsigned only while no EngageLab service
    // has a webhook secret; otherwise the request must verify against one of them, which then
    // answers for it (its account scopes the matching).
    if (provider !== 'engagelab') throw new DomainError('NOT_FOUND', 'no such service for this provider');
    const candidates = this.engagelabServices.peek('engagelab');
    return candidates
      ? this.verifiedByOneOf(candidates, rawBody, headers)
      : this.engagelabServices.get('engagelab').then((rows) => this.verifiedByOneOf(rows, rawBody, headers));
  }

  private verifiedBy(
    provider: WebhookProvider,
    service: ServiceRow | null,
    serviceId: string,
    rawBody: string,
    headers: Record<string, string>,
  ): Verified | Promise<Verified> {
    if (!service || service.provider !== provider)
      throw new DomainError('NOT_FOUND', 'no such service for this provider');
    const check = this.verifier.verify({ provider, options: service.options }, rawBody, headers);
    const answer = (verification: Verification) => this.accepted(verification, provider, serviceId);
    return check instanceof Promise ? check.then(answer) : answer(check);
  }

  /**
   * The generic path's request against its candidates (none: unsigned). The service whose secret
   * verifies it answers for it: the oldest when several of one account do, none when services of
   * several accounts do. EngageLab's checks are immediate.
   */
  private verifiedByOneOf(
    candidates: ServiceRow[],
    rawBody: string,
    headers: Record<string, string>,
  ): Verified {
    const provider = 'engagelab';
    const verify = (options: Record<string, unknown>) =>
      this.verifier.verify({ provider, options }, rawBody, headers) as Verification;
    if (candidates.length === 0) return this.accepted(verify({}), provider, null);
    let answering: { check: Verification; service: ServiceRow } | undefined;
    for (const candidate of candidates) {
      const check = verify(candidate.options);
      if (check.failure) continue;
      if (!answering) answering = { check, service: candidate };
      // The same secret in two tenants' services: either may have sent the mail, so neither
      // answers for it. Stored for no service, it is matched in any account (by its tracking id,
      // which names one sub-task), where the oldest service's account would have missed the other's.
      else if (candidate.account_id !== answering.service.account_id)
        return this.accepted(check, provider, null);
    }
    if (answering) return this.accepted(answering.check, provider, answering.service.id);
    const failure = 'no EngageLab service secret verifies it';
    return this.accepted({ verified: false, failure }, provider, null);
  }

  /**
   * The service answering for a request that verified (or needs no signature); one that failed is
   * logged and refused (401), or answered 503 when its check could not be made for now, so that
   * the provider sends it again.
   */
  private accepted(
    verification: Verification,
    provider: WebhookProvider,
    serviceId: string | null,
  ): Verified {
    if (!verification.failure)
      return verification.fromOwnTopic
        ? { serviceId, verified: verification.verified, fromOwnTopic: true }
        : { serviceId, verified: verification.verified };
    if (verification.retryable) {
      this.logger.event('warn', 'webhook signature not checked for now; answered 503', {
        provider,
        serviceId,
        reason: verification.failure,
      });
      throw new DomainError('UNAVAILABLE', 'the signature cannot be checked now; send it again later');
    }
    this.logger.event('warn', 'webhook signature refused', {
      provider,
      serviceId,
      reason: verification.failure,
    });
    throw new DomainError('UNAUTHENTICATED', 'signature does not verify');
  }

  /**
   * SNS asks to confirm a subscription; the message verified, so its SubscribeURL is SNS's own. It
   * is confirmed only for a topic the service names in `webhookTopicArns`: a valid signature comes
   * from any AWS account's topic, and a subscription confirmed for a stranger's topic would let
   * them send this service any SES event they like.
   */
  private async confirmSubscription(
    rawBody: string,
    headers: Record<string, string>,
    serviceId: string | null,
    fromOwnTopic: boolean,
  ): Promise<void> {
    const parsed = parseWebhook('ses', rawBody, headers);
    if (parsed.kind !== 'sns-subscription' || parsed.messageType !== 'SubscriptionConfirmation') return;
    if (!fromOwnTopic) {
      this.logger.event('warn', 'SNS subscription not confirmed: the service names no webhookTopicArns', {
        serviceId,
        topicArn: parsed.topicArn,
      });
      return;
    }
    try {
      const response = await fetch(parsed.subscribeUrl, { signal: AbortSignal.timeout(10_000) });
      this.logger.event('info', 'SNS subscription confirmed', {
        topicArn: parsed.topicArn,
        status: response.status,
      });
    } catch (error) {
      this.logger.event('warn', 'SNS subscription confirmation failed', {
        topicArn: parsed.topicArn,
        error: String(error),
      });
    }
  }
}
