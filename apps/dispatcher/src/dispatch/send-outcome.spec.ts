import { decideOutcome, OutcomePolicy, retryDelay } from './send-outcome';

const attempt = {
  subTaskId: '018f0000-0000-7000-8000-000000000001',
  taskId: '018f0000-0000-7000-8000-000000000002',
  serviceId: '018f0000-0000-7000-8000-000000000003',
  attempt: 2,
};
const policy: OutcomePolicy = {
  maxAttempts: 5,
  retryBaseMs: 1_000,
  retryMaxMs: 60_000,
  idempotentProvider: false,
  random: () => 0.5,
};
const now = new Date('2026-11-28T12:00:00Z');

describe('decideOutcome', () => {
  it('given an accepted send, records it sent with the provider id', () => {
    const d = decideOutcome(attempt, { kind: 'sent', providerMessageId: 'pm-1' }, policy, now);
    expect(d.event).toEqual({
      type: 'SubTaskSent',
      data: expect.objectContaining({ providerMessageId: 'pm-1', sentAt: now.toISOString() }),
    });
    expect(d.serviceFailure).toBe(false);
  });

  it('given a transient error, schedules a retry with backoff, honouring Retry-After', () => {
    const d = decideOutcome(attempt, { kind: 'transient', reason: '503' }, policy, now);
    expect(d.event.type).toBe('SubTaskRetryScheduled');
    expect(d.event.data).toMatchObject({ nextAttemptAt: new Date(now.getTime() + 2_000).toISOString() });
    const later = decideOutcome(
      attempt,
      { kind: 'transient', reason: '429', retryAfterMs: 30_000 },
      policy,
      now,
    );
    expect(later.event.data).toMatchObject({ nextAttemptAt: new Date(now.getTime() + 30_000).toISOString() });
  });

  it('given the last attempt failing transiently, fails the sub-task', () => {
    const d = decideOutcome(
      { ...attempt, attempt: 5 },
      { kind: 'transient', reason: 'timeout' },
      policy,
      now,
    );
    expect(d.event).toMatchObject({
      type: 'SubTaskFailed',
      data: { reason: 'gave up after 5 attempts: timeout' },
    });
  });

  it('gives the quota back only for a mail of which nothing reached the provider, retried or failed', () => {
    const notSent = { kind: 'transient', reason: 'request not sent: ECONNREFUSED', notSent: true } as const;
    expect(decideOutcome(attempt, notSent, policy, now)).toMatchObject({
      event: { type: 'SubTaskRetryScheduled' },
      quotaBack: true,
    });
    expect(decideOutcome({ ...attempt, attempt: 5 }, notSent, policy, now)).toMatchObject({
      event: { type: 'SubTaskFailed' },
      quotaBack: true,
    });
    for (const outcome of [
      { kind: 'transient', reason: 'HTTP 503' },
      { kind: 'permanent', reason: 'no such user' },
      { kind: 'account', reason: 'HTTP 401' },
      { kind: 'ambiguous', reason: 'no answer' },
      { kind: 'sent', providerMessageId: 'pm-1' },
    ] as const)
      expect(decideOutcome(attempt, outcome, policy, now).quotaBack).toBeUndefined();
  });

  it('given a permanent error, fails the sub-task without blaming the service', () => {
    expect(decideOutcome(attempt, { kind: 'permanent', reason: 'no such user' }, policy, now)).toMatchObject({
      event: { type: 'SubTaskFailed' },
      serviceFailure: false,
    });
  });

  it('given an account error, freezes the service and releases the sub-task untouched', () => {
    const d = decideOutcome(attempt, { kind: 'account', reason: '401 bad key' }, policy, now);
    expect(d).toMatchObject({
      event: { type: 'SubTaskReleased', data: { attempts: 1 } },
      freezeReason: '401 bad key',
    });
  });

  it('given an ambiguous outcome, marks it unknown, or retries when the provider dedupes', () => {
    expect(decideOutcome(attempt, { kind: 'ambiguous', reason: 'reset' }, policy, now).event.type).toBe(
      'SubTaskUnknown',
    );
    expect(
      decideOutcome(
        attempt,
        { kind: 'ambiguous', reason: 'reset' },
        { ...policy, idempotentProvider: true },
        now,
      ).event.type,
    ).toBe('SubTaskRetryScheduled');
  });

  it('jitters and caps the delay', () => {
    expect(retryDelay(1, { ...policy, random: () => 0 })).toBe(500);
    expect(retryDelay(1, { ...policy, random: () => 0.999 })).toBe(1_499);
    expect(retryDelay(30, policy)).toBe(60_000);
  });
});
