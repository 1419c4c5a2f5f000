import { parseWebhook } from './parse-webhook';

describe('sandbox parser', () => {
  it('reads each event with its own id as dedupe key', () => {
    const body = {
      events: [
        {
          eventId: 'e1',
          type: 'delivered',
          trackingId: 'trk-1',
          messageId: '<m1>',
          email: 'A@x.example',
          timestamp: 1700000000000,
        },
        {
          eventId: 'e2',
          type: 'click',
          email: 'a@x.example',
          timestamp: 1700000001000,
          url: 'https://e.example',
          taskId: 't1',
        },
      ],
    };
    expect(parseWebhook('sandbox', JSON.stringify(body), {})).toEqual({
      kind: 'events',
      rejected: [],
      events: [
        expect.objectContaining({
          provider: 'sandbox',
          providerEventId: 'e1',
          type: 'delivered',
          trackingId: 'trk-1',
          providerMessageId: 'm1',
          recipient: 'a@x.example',
          occurredAt: new Date(1700000000000),
          dedupeKey: 'sandbox:id:e1',
        }),
        expect.objectContaining({
          type: 'click',
          url: 'https://e.example',
          taskId: 't1',
          dedupeKey: 'sandbox:id:e2',
        }),
      ],
    });
  });

  it('stores unknown types without a normalised type and rejects malformed entries', () => {
    const body = {
      events: [{ eventId: 'e1', type: 'bounced?', email: 'a@x.example', timestamp: 1 }, { eventId: 'e2' }],
    };
    expect(parseWebhook('sandbox', JSON.stringify(body), {})).toMatchObject({
      kind: 'events',
      events: [{ rawType: 'bounced?', type: null }],
      rejected: [{ index: 1 }],
    });
  });

  it('is invalid without an events array', () => {
    expect(parseWebhook('sandbox', '{"event":[]}', {}).kind).toBe('invalid');
  });
});
