import { classifyHttpFailure, parseRetryAfter } from './classify-http-failure';

describe('classifyHttpFailure', () => {
  const NOW = Date.parse('2025-03-01T12:00:00Z');
  const answered = (status: number, retryAfter?: string) =>
    classifyHttpFailure({ stage: 'response', status, reason: 'provider said no', retryAfter }, NOW);

  it.each([
    [400, 'permanent'],
    [413, 'permanent'],
    [422, 'permanent'],
    [401, 'account'],
    [402, 'account'],
    [403, 'account'],
    [404, 'account'],
    [301, 'account'],
    [408, 'transient'],
    [429, 'transient'],
    [500, 'transient'],
    [502, 'transient'],
    [503, 'transient'],
    [200, 'ambiguous'],
    [202, 'ambiguous'],
  ])('classifies HTTP %i as %s', (status, kind) => {
    expect(answered(status).kind).toBe(kind);
  });

  it('keeps the status and the reason of the provider', () => {
    expect(answered(400)).toEqual({ kind: 'permanent', reason: 'HTTP 400: provider said no' });
  });

  it('carries Retry-After into the transient outcome', () => {
    expect(answered(429, '7')).toEqual({
      kind: 'transient',
      reason: 'HTTP 429: provider said no',
      retryAfterMs: 7_000,
    });
  });

  it('treats a request that never fully left as transient, and as never having reached the provider', () => {
    expect(
      classifyHttpFailure({ stage: 'transport', requestWritten: false, reason: 'ECONNREFUSED' }),
    ).toEqual({
      kind: 'transient',
      reason: 'request not sent: ECONNREFUSED',
      notSent: true,
    });
    // An answer, even a 503, came from the provider: it may have counted the request.
    expect(classifyHttpFailure({ stage: 'response', status: 503, reason: 'busy' })).not.toHaveProperty(
      'notSent',
    );
  });

  it('treats a request that left without an answer as ambiguous', () => {
    expect(
      classifyHttpFailure({ stage: 'transport', requestWritten: true, reason: 'socket hang up' }),
    ).toEqual({
      kind: 'ambiguous',
      reason: 'no answer after the request was sent: socket hang up',
    });
  });
});

describe('parseRetryAfter', () => {
  const NOW = Date.parse('2025-03-01T12:00:00Z');

  it('reads delta-seconds', () => {
    expect(parseRetryAfter('120', NOW)).toBe(120_000);
  });

  it('reads an HTTP date', () => {
    expect(parseRetryAfter('Sat, 01 Mar 2025 12:00:30 GMT', NOW)).toBe(30_000);
  });

  it('never answers a negative wait for a date in the past', () => {
    expect(parseRetryAfter('Sat, 01 Mar 2025 11:00:00 GMT', NOW)).toBe(0);
  });

  it('ignores what it cannot read', () => {
    expect(parseRetryAfter('soon', NOW)).toBeUndefined();
    expect(parseRetryAfter(null, NOW)).toBeUndefined();
  });
});
