import { parseWebhook } from './parse-webhook';

const body = (eventData: Record<string, unknown>) =>
  JSON.stringify({
    signature: { timestamp: '1700000000', token: 't', signature: '0'.repeat(64) },
    'event-data': {
      id: 'evt-1',
      event: 'delivered',
      timestamp: 1700000000.25,
      recipient: 'A@Example.com',
      message: { headers: { 'message-id': '<20231114.1@mg.example.com>' } },
      'user-variables': { edm_tracking_id: 'trk-1', edm_task_id: 'task-1', attempt: 2 },
      ...eventData,
    },
  });

describe('Mailgun parser', () => {
  it('reads ids, user-variables and the fractional timestamp', () => {
    expect(parseWebhook('mailgun', body({}), {})).toMatchObject({
      kind: 'events',
      events: [
        {
          providerEventId: 'evt-1',
          recipient: 'a@example.com',
          providerMessageId: '20231114.1@mg.example.com',
          trackingId: 'trk-1',
          taskId: 'task-1',
          customArgs: { edm_tracking_id: 'trk-1', edm_task_id: 'task-1', attempt: '2' },
          occurredAt: new Date(1700000000250),
          dedupeKey: 'mailgun:id:evt-1',
        },
      ],
    });
  });

  it('falls back to an echoed X-EDM-Tracking-Id header', () => {
    const result = parseWebhook(
      'mailgun',
      body({
        'user-variables': [],
        message: { headers: { 'message-id': 'm@x', 'X-EDM-Tracking-Id': 'trk-h' } },
      }),
      {},
    );
    expect(result).toMatchObject({ events: [{ trackingId: 'trk-h', customArgs: {} }] });
  });

  it('marks failures caused by an existing suppression', () => {
    const result = parseWebhook(
      'mailgun',
      body({ event: 'failed', severity: 'permanent', reason: 'suppress-bounce' }),
      {},
    );
    expect(result).toMatchObject({
      events: [{ type: 'hard_bounce', suppression: true, reason: 'suppress-bounce' }],
    });
  });

  it('stores unknown events without a type', () => {
    expect(parseWebhook('mailgun', body({ event: 'stored' }), {})).toMatchObject({
      events: [{ rawType: 'stored', type: null }],
    });
  });

  it('is invalid without event-data', () => {
    expect(parseWebhook('mailgun', '{"signature":{}}', {}).kind).toBe('invalid');
  });
});
