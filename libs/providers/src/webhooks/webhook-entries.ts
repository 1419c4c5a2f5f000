import type { ParsedMailEvent, ParseWebhookResult, RejectedWebhookEntry } from './parsed-mail-event';

/** What reading one entry of a body (one event object) produced. */
export type EntryOutcome = { ok: true; events: ParsedMailEvent[] } | { ok: false; reason: string };

export const entryEvents = (...events: ParsedMailEvent[]): EntryOutcome => ({ ok: true, events });
export const entryRejected = (reason: string): EntryOutcome => ({ ok: false, reason });

/** A batch keeps its readable entries; a body none of whose entries is readable is `invalid`. */
export const collectEntries = (outcomes: readonly EntryOutcome[]): ParseWebhookResult => {
  const events: ParsedMailEvent[] = [];
  const rejected: RejectedWebhookEntry[] = [];
  outcomes.forEach((outcome, index) => {
    if (outcome.ok) events.push(...outcome.events);
    else rejected.push({ index, reason: outcome.reason });
  });
  if (outcomes.length > 0 && rejected.length === outcomes.length) {
    const only = outcomes.length === 1 ? '' : `all ${outcomes.length} entries rejected; first: `;
    return { kind: 'invalid', reason: `${only}${rejected[0].reason}` };
  }
  return { kind: 'events', events, rejected };
};
