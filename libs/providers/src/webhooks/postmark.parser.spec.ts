import { parseWebhook } from './parse-webhook';

const parse = (body: Record<string, unknown>) => parseWebhook('postmark', JSON.stringify(body), {});

describe('Postmark parser', () => {
  it.each([
    ['SoftBounce', 'soft_bounce'],
    ['Transient', 'deferred'],
    ['AutoResponder', null],
  ])('a %s bounce is %s', (bounceType, type) => {
    const result = parse({
      RecordType: 'Bounce',
      Type: bounceType,
      ID: 7,
      Email: 'a@x.example',
      BouncedAt: '2024-01-01T00:00:00Z',
    });
    expect(result).toMatchObject({ events: [{ type, providerEventId: '7' }] });
  });

  it.each([
    ['ManualSuppression', true, 'unsubscribe'],
    ['SpamComplaint', true, 'complaint'],
    ['HardBounce', false, null],
  ])('SubscriptionChange %s with SuppressSending %s is %s', (reason, suppress, type) => {
    const result = parse({
      RecordType: 'SubscriptionChange',
      Recipient: 'a@x.example',
      ChangedAt: '2024-01-01T00:00:00Z',
      SuppressSending: suppress,
      SuppressionReason: reason,
    });
    expect(result).toMatchObject({ events: [{ type, suppression: suppress }] });
  });

  it('reads our tracking id from Metadata and hashes events without an ID', () => {
    const result = parse({
      RecordType: 'Delivery',
      Recipient: 'a@x.example',
      DeliveredAt: '2024-01-01T00:00:00Z',
      Metadata: { edm_tracking_id: 'trk-1' },
    });
    expect(result).toMatchObject({
      events: [{ trackingId: 'trk-1', dedupeKey: expect.stringMatching(/^postmark:sha256:/) }],
    });
  });

  it('is invalid without RecordType or a time', () => {
    expect(parse({ Recipient: 'a@x.example' }).kind).toBe('invalid');
    expect(parse({ RecordType: 'Delivery', DeliveredAt: 'yesterday' }).kind).toBe('invalid');
  });
});
