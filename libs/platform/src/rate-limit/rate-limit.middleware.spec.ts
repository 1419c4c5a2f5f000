import type { Request, Response } from 'express';
import { Metrics } from '@edm/observability';
import { rateLimitMiddleware, RateLimits } from './rate-limit.middleware';

interface Answer {
  status?: number;
  headers: Record<string, string>;
  body?: unknown;
  passed: boolean;
}

describe('rateLimitMiddleware', () => {
  const metrics = new Metrics('test');
  const clock = { now: 0 };
  const middleware = rateLimitMiddleware(
    [
      { name: 'webhooks', pathPrefix: '/api/webhooks/', perSecond: 1, burst: 2 },
      { name: 'tracking', pathPrefix: '/t/', perSecond: 0, burst: 1 },
    ],
    metrics,
    () => clock.now,
  );
  const send = (path: string, ip = '192.0.2.1'): Answer => {
    const answer: Answer = { headers: {}, passed: false };
    const response = {
      status(code: number) {
        answer.status = code;
        return this;
      },
      set(name: string, value: string) {
        answer.headers[name] = value;
        return this;
      },
      json(body: unknown) {
        answer.body = body;
        return this;
      },
    };
    middleware({ path, ip } as Request, response as unknown as Response, () => (answer.passed = true));
    return answer;
  };

  it('answers 429 with Retry-After and the JSON error shape once the bucket is empty, and counts it', async () => {
    expect(send('/api/webhooks/mail-event').passed).toBe(true);
    expect(send('/API/Webhooks/sendgrid/x').passed).toBe(true);
    const refused = send('/api/webhooks/mail-event');
    expect(refused).toEqual({
      passed: false,
      status: 429,
      headers: { 'Retry-After': '1' },
      body: { error: { code: 'RATE_LIMITED', message: expect.stringMatching(/retry after 1 s/) } },
    });
    expect(send('/api/webhooks/mail-event', '192.0.2.2').passed).toBe(true);
    const scraped = await metrics.registry.metrics();
    expect(scraped).toMatch(/edm_http_rate_limited_total\{limit="webhooks",service="test"\} 1/);
    expect(scraped).toMatch(/edm_http_rate_limit_clients\{limit="webhooks",service="test"\} 2/);
    clock.now += 1_000;
    expect(send('/api/webhooks/mail-event').passed).toBe(true);
  });

  it('leaves other routes and switched-off limits alone', () => {
    for (let i = 0; i < 10; i += 1) {
      expect(send('/health/ready', '192.0.2.9').passed).toBe(true);
      expect(send('/metrics', '192.0.2.9').passed).toBe(true);
      expect(send('/t/open/x.gif', '192.0.2.9').passed).toBe(true);
    }
  });

  it('asks for the client address only on a path a limit applies to', () => {
    const limits = new RateLimits(
      [
        { name: 'webhooks', pathPrefix: '/api/webhooks/', perSecond: 0, burst: 1 },
        { name: 'tracking', pathPrefix: '/t/', perSecond: 1, burst: 1 },
      ],
      new Metrics('test'),
      () => 0,
    );
    const asked: string[] = [];
    const address = (path: string) => () => (asked.push(path), '192.0.2.7');
    expect(limits.check('/api/webhooks/mail-event', address('/api/webhooks/mail-event'))).toBeNull();
    expect(limits.check('/t/open/x.gif', address('/t/open/x.gif'))).toBeNull();
    expect(limits.check('/t/open/x.gif', address('/t/open/x.gif'))?.retryAfterSeconds).toBe(1);
    expect(asked).toEqual(['/t/open/x.gif', '/t/open/x.gif']);
  });
});
