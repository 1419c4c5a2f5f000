import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { uuidv7 } from '@edm/event-store';
import { JsonLogger, Metrics } from '@edm/observability';
import { DomainError } from '@edm/platform';
import { isWebhookProvider, parseWebhook, WebhookProvider } from '@edm/providers';
import { RawIntakeWriter } from './raw-intake.writer';
import { WebhookVerifier } from './webhook-verifier';

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

interface ServiceRow {
  id: string;
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
  private services = new Map<string, { row: ServiceRow | null; at: number }>();
  private engagelabServices?: { rows: ServiceRow[]; at: number };

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

  async receive(incoming: IncomingWebhook): Promise<{ id: string }> {
    const started = performance.now();
    const provider = incoming.provider;
    try {
      const result = await this.receiveChecked(incoming);
      this.requests.inc({ provider, outcome: 'stored' });
      this.latency.observe({ provider }, (performance.now() - started) / 1_000);
      return result;
    } catch (error) {
      this.requests.inc({
        provider: isWebhookProvider(provider) ? provider : 'unknown',
        outcome: error instanceof DomainError ? error.code.toLowerCase() : 'unavailable',
      });
      if (error instanceof DomainError) throw error;
      this.logger.event('error', 'webhook not stored', { provider, error: String(error) });
      throw new DomainError('UNAVAILABLE', 'the webhook could not be stored; retry later');
    }
  }

  private async receiveChecked(incoming: IncomingWebhook): Promise<{ id: string }> {
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

    let serviceId = incoming.serviceId;
    let verification: { failure?: string; verified: boolean };
    if (serviceId !== null) {
      const service = await this.service(serviceId);
      if (!service || service.provider !== provider)
        throw new DomainError('NOT_FOUND', 'no such service for this provider');
      verification = await this.verifier.verify({ provider, options: service.options }, rawBody, headers);
    } else {
      // The generic EngageLab path names no service: unsigned only while no EngageLab service has
      // a webhook secret; otherwise the request must verify against one of them, which then
      // answers for it (its account scopes the matching).
      const candidates = this.cachedEngagelabServices() ?? (await this.genericEngagelabServices());
      verification =
        candidates.length === 0
          ? await this.verifier.verify({ provider, options: {} }, rawBody, headers)
          : { verified: false, failure: 'no EngageLab service secret verifies it' };
      for (const candidate of candidates) {
        const check = await this.verifier.verify({ provider, options: candidate.options }, rawBody, headers);
        if (!check.failure) {
          verification = check;
          serviceId = candidate.id;
          break;
        }
      }
    }
    if (verification.failure) {
      this.logger.event('warn', 'webhook signature refused', {
        provider,
        serviceId: incoming.serviceId,
        reason: verification.failure,
      });
      throw new DomainError('UNAUTHENTICATED', 'signature does not verify');
    }
    const id = uuidv7();
    await this.writer.store({
      id,
      source: provider,
      serviceId,
      path: incoming.path,
      headers: stored,
      rawBody,
      verified: verification.verified,
    });
    if (provider === 'ses' && verification.verified) void this.confirmSubscription(rawBody, headers);
    return { id };
  }

  /** SNS asks to confirm a subscription; the message verified, so its SubscribeURL is SNS's own. */
  private async confirmSubscription(rawBody: string, headers: Record<string, string>): Promise<void> {
    const parsed = parseWebhook('ses', rawBody, headers);
    if (parsed.kind !== 'sns-subscription' || parsed.messageType !== 'SubscriptionConfirmation') return;
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

  /** Services change rarely; a few seconds of caching keeps the hot path off the database. */
  private async service(id: string): Promise<ServiceRow | null> {
    if (!UUID.test(id)) return null;
    const cached = this.services.get(id);
    if (cached && Date.now() - cached.at < 5_000) return cached.row;
    const [row] = await this.dataSource.query(
      `SELECT id, provider, options FROM sending_services WHERE id = $1`,
      [id],
    );
    if (this.services.size > 10_000) this.services = new Map();
    this.services.set(id, { row: row ?? null, at: Date.now() });
    return row ?? null;
  }

  /** The generic path's candidates while the cache is fresh: no await on the hot path. */
  private cachedEngagelabServices(): ServiceRow[] | undefined {
    const cached = this.engagelabServices;
    return cached && Date.now() - cached.at < 5_000 ? cached.rows : undefined;
  }

  /** Loads the EngageLab services with a webhook secret, the generic path's candidates, and caches them briefly. */
  private async genericEngagelabServices(): Promise<ServiceRow[]> {
    const rows: ServiceRow[] = await this.dataSource.query(
      `SELECT id, provider, options FROM sending_services
        WHERE provider = 'engagelab' AND coalesce(options->>'webhookAppKey', '') <> ''
        ORDER BY created_at LIMIT 100`,
    );
    this.engagelabServices = { rows, at: Date.now() };
    return rows;
  }
}
