import { parseWebhook } from './parse-webhook';

const event = (extra: Record<string, unknown> = {}) => ({
  email: 'Someone@Example.com',
  timestamp: 1700000000,
  'smtp-id': '<abcDEF123@ismtpd0001p1iad2.sendgrid.net>',
  event: 'delivered',
  sg_event_id: 'ZGVsaXZlcmVk',
  sg_message_id: 'abcDEF123.filterdrecv-5bd6f9f8c5-abcde-1-5F5FC76C-9.0',
  ...extra,
});

describe('SendGrid parser', () => {
  it('reads our tracking and task ids from custom args, and keeps numbers as strings', () => {
    const result = parseWebhook(
      'sendgrid',
      JSON.stringify([event({ edm_tracking_id: 'trk-1', edm_task_id: 't-1', n: 5 })]),
      {},
    );
    expect(result).toMatchObject({
      kind: 'events',
      events: [
        {
          recipient: 'someone@example.com',
          trackingId: 'trk-1',
          taskId: 't-1',
          customArgs: { edm_tracking_id: 'trk-1', edm_task_id: 't-1', n: '5' },
          providerMessageId: 'abcDEF123',
          messageIdCandidates: ['abcDEF123.filterdrecv-5bd6f9f8c5-abcde-1-5F5FC76C-9.0', 'abcDEF123'],
          headerMessageId: 'abcDEF123@ismtpd0001p1iad2.sendgrid.net',
          dedupeKey: 'sendgrid:id:ZGVsaXZlcmVk:delivered',
        },
      ],
    });
  });

  it('does not treat SendGrid system fields as custom args', () => {
    const result = parseWebhook(
      'sendgrid',
      JSON.stringify([
        event({ sg_machine_open: false, marketing_campaign_id: 1, tls: 1, cert_err: 0, category: ['a'] }),
      ]),
      {},
    );
    expect(result).toMatchObject({ kind: 'events', events: [{ customArgs: {} }] });
  });

  it('keeps the readable entries of a batch and reports the unreadable ones', () => {
    const body = [event(), { event: 'open' }, 'nonsense', event({ event: 'open', sg_event_id: 'b3Blbg' })];
    const result = parseWebhook('sendgrid', JSON.stringify(body), {});
    expect(result).toMatchObject({
      kind: 'events',
      events: [{ type: 'delivered' }, { type: 'open' }],
      rejected: [
        { index: 1, reason: expect.stringContaining('timestamp') },
        { index: 2, reason: expect.any(String) },
      ],
    });
  });

  it('hashes events that have no sg_event_id, and an empty batch is no events', () => {
    const { sg_event_id: _id, ...noId } = event();
    expect(parseWebhook('sendgrid', JSON.stringify([noId]), {})).toMatchObject({
      events: [{ dedupeKey: expect.stringMatching(/^sendgrid:sha256:[0-9a-f]{64}$/) }],
    });
    expect(parseWebhook('sendgrid', '[]', {})).toEqual({ kind: 'events', events: [], rejected: [] });
  });

  it('is invalid for a non-array body', () => {
    expect(parseWebhook('sendgrid', JSON.stringify(event()), {})).toEqual({
      kind: 'invalid',
      reason: 'SendGrid body is not a JSON array',
    });
  });

  it('does not mark drops for other reasons as suppressions', () => {
    const result = parseWebhook(
      'sendgrid',
      JSON.stringify([event({ event: 'dropped', reason: 'Spam Content' })]),
      {},
    );
    expect(result).toMatchObject({ events: [{ type: 'hard_bounce', suppression: false }] });
  });
});
