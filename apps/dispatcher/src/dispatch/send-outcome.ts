import { NewEvent, newEvent } from '@edm/events';
import { SendOutcome } from '@edm/providers';

export interface SendAttempt {
  subTaskId: string;
  taskId: string;
  serviceId: string;
  /** Attempts including this one. */
  attempt: number;
}

export interface OutcomePolicy {
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** Whether the provider dedupes a resend by our idempotency key. */
  idempotentProvider: boolean;
  random: () => number;
}

export interface OutcomeDecision {
  event: NewEvent;
  /** An error of the account: the service is frozen. */
  freezeReason?: string;
  /** Counts as a failure of the service (for the consecutive-failure tally). */
  serviceFailure: boolean;
  /** Nothing of the mail reached the provider: the quota the lease counted for it is given back. */
  quotaBack?: true;
}

/** Exponential backoff with ±50% jitter, capped. */
export function retryDelay(
  attempt: number,
  policy: Pick<OutcomePolicy, 'retryBaseMs' | 'retryMaxMs' | 'random'>,
): number {
  const raw = Math.min(policy.retryMaxMs, policy.retryBaseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(raw * (0.5 + policy.random()));
}

/** SPEC 3.2: what the outcome of one send does to its sub-task. */
export function decideOutcome(
  attempt: SendAttempt,
  outcome: SendOutcome,
  policy: OutcomePolicy,
  now: Date,
): OutcomeDecision {
  const ref = { subTaskId: attempt.subTaskId, taskId: attempt.taskId };
  const retryOrFail = (reason: string, retryAfterMs?: number): OutcomeDecision => {
    if (attempt.attempt >= policy.maxAttempts) {
      return {
        event: newEvent('SubTaskFailed', {
          ...ref,
          serviceId: attempt.serviceId,
          reason: `gave up after ${attempt.attempt} attempts: ${reason}`,
        }),
        serviceFailure: true,
      };
    }
    const delay = Math.max(retryAfterMs ?? 0, retryDelay(attempt.attempt, policy));
    return {
      event: newEvent('SubTaskRetryScheduled', {
        ...ref,
        serviceId: attempt.serviceId,
        reason,
        nextAttemptAt: new Date(now.getTime() + delay).toISOString(),
      }),
      serviceFailure: true,
    };
  };
  switch (outcome.kind) {
    case 'sent':
      return {
        event: newEvent('SubTaskSent', {
          ...ref,
          serviceId: attempt.serviceId,
          providerMessageId: outcome.providerMessageId,
          sentAt: now.toISOString(),
        }),
        serviceFailure: false,
      };
    case 'transient': {
      const decision = retryOrFail(outcome.reason, outcome.retryAfterMs);
      return outcome.notSent ? { ...decision, quotaBack: true } : decision;
    }
    case 'permanent':
      return {
        event: newEvent('SubTaskFailed', { ...ref, serviceId: attempt.serviceId, reason: outcome.reason }),
        serviceFailure: false,
      };
    case 'account':
      // Not the recipient's fault: the sub-task goes back untouched for another service.
      return {
        event: newEvent('SubTaskReleased', {
          ...ref,
          reason: `service error: ${outcome.reason}`,
          attempts: attempt.attempt - 1,
        }),
        freezeReason: outcome.reason,
        serviceFailure: true,
      };
    case 'ambiguous':
      // Resending could deliver twice, unless the provider dedupes our idempotency key.
      return policy.idempotentProvider
        ? retryOrFail(`${outcome.reason} (provider dedupes resends)`)
        : {
            event: newEvent('SubTaskUnknown', {
              ...ref,
              serviceId: attempt.serviceId,
              reason: outcome.reason,
            }),
            serviceFailure: true,
          };
  }
}
