import { performance } from 'node:perf_hooks';
import type { NextFunction, Request, Response } from 'express';
import { Metrics } from '@edm/observability';
import { clientKey, RateLimiter } from './rate-limiter';

export interface RateLimitRule {
  /** Names the limit in the metric and the error. */
  name: string;
  /** Requests whose path starts with this (compared case-insensitively) are counted. */
  pathPrefix: string;
  /** 0 turns the limit off. */
  perSecond: number;
  burst: number;
}

/** Clients tracked per limit: at up to about 250 bytes a client, each map stays under about 25 MB. */
export const RATE_LIMIT_MAX_CLIENTS = 100_000;

/** A request refused by a limit: answer 429 with `Retry-After` and this body. */
export interface RateLimitRefusal {
  retryAfterSeconds: number;
  body: { error: { code: 'RATE_LIMITED'; message: string } };
}

/**
 * Per-client token buckets on the routes the rules name, checked before the body is read. A
 * refused request gets 429, `Retry-After` and the platform's JSON error shape. The client is
 * `request.ip`, which honours HTTP_TRUST_PROXY. One instance serves every route of a process, so
 * a route answered outside Express (webhook intake) draws on the same buckets.
 */
export class RateLimits {
  private readonly limits;
  private readonly refused;

  constructor(rules: RateLimitRule[], metrics: Metrics, now: () => number = () => performance.now()) {
    const limits = rules
      .filter((rule) => rule.perSecond > 0)
      .map((rule) => ({
        rule,
        prefix: rule.pathPrefix.toLowerCase(),
        limiter: new RateLimiter({
          perSecond: rule.perSecond,
          burst: rule.burst,
          maxClients: RATE_LIMIT_MAX_CLIENTS,
          now,
        }),
      }));
    this.limits = limits;
    this.refused = metrics.counter(
      'edm_http_rate_limited_total',
      'Requests refused with 429 by a per-client rate limit, by limit.',
      ['limit'],
    );
    metrics.gauge(
      'edm_http_rate_limit_clients',
      'Clients tracked by each rate limit.',
      ['limit'],
      function () {
        for (const { rule, limiter } of limits) this.set({ limit: rule.name }, limiter.size);
      },
    );
    for (const { rule } of limits) this.refused.inc({ limit: rule.name }, 0);
  }

  /**
   * Takes a token for this request; the refusal to answer with when there is none, else null. The
   * client's address is asked for only when a limit applies to the path: working it out from the
   * forwarding headers is work the unlimited paths skip.
   */
  check(path: string, clientAddress: () => string | undefined): RateLimitRefusal | null {
    if (this.limits.length === 0) return null;
    const lower = path.toLowerCase();
    const limit = this.limits.find((l) => lower.startsWith(l.prefix));
    if (!limit) return null;
    const decision = limit.limiter.take(clientKey(clientAddress()));
    if (decision.allowed) return null;
    this.refused.inc({ limit: limit.rule.name });
    return {
      retryAfterSeconds: decision.retryAfterSeconds,
      body: {
        error: {
          code: 'RATE_LIMITED',
          message: `too many requests from this address; retry after ${decision.retryAfterSeconds} s`,
        },
      },
    };
  }

  middleware() {
    return (request: Request, response: Response, next: NextFunction): void => {
      const refusal = this.check(request.path, () => request.ip);
      if (!refusal) return next();
      response.status(429).set('Retry-After', String(refusal.retryAfterSeconds)).json(refusal.body);
    };
  }
}

export function rateLimitMiddleware(
  rules: RateLimitRule[],
  metrics: Metrics,
  now: () => number = () => performance.now(),
) {
  return new RateLimits(rules, metrics, now).middleware();
}
