import { parseWebhook } from './parse-webhook';

const mail = {
  timestamp: '2024-01-01T00:00:00.000Z',
  messageId: 'ses-msg-1',
  destination: ['a@x.example', 'b@x.example'],
  headers: [
    { name: 'X-EDM-Tracking-Id', value: 'trk-h' },
    { name: 'Message-ID', value: '<our-id@edm.example>' },
  ],
  tags: { 'ses:configuration-set': ['cs'], edm_task_id: ['task-1'] },
};

const envelope = (record: unknown, messageId = 'sns-1') =>
  JSON.stringify({
    Type: 'Notification',
    MessageId: messageId,
    TopicArn: 'arn:aws:sns:eu-west-1:1:t',
    Message: JSON.stringify(record),
    Timestamp: '2024-01-01T00:00:05.000Z',
    SignatureVersion: '1',
    Signature: 'x',
    SigningCertURL: 'https://sns.eu-west-1.amazonaws.com/c.pem',
  });

describe('SES parser', () => {
  it('fans a bounce out per bounced recipient, each with its own dedupe key', () => {
    const record = {
      eventType: 'Bounce',
      mail,
      bounce: {
        bounceType: 'Transient',
        bounceSubType: 'MailboxFull',
        timestamp: '2024-01-01T00:00:02.000Z',
        bouncedRecipients: [
          { emailAddress: 'A@x.example' },
          { emailAddress: 'b@x.example', diagnosticCode: '452 full' },
        ],
      },
    };
    const result = parseWebhook('ses', envelope(record), {});
    expect(result).toMatchObject({
      kind: 'events',
      events: [
        { type: 'soft_bounce', recipient: 'a@x.example', dedupeKey: 'ses:id:sns-1:a%40x.example' },
        { type: 'soft_bounce', recipient: 'b@x.example', reason: 'Transient/MailboxFull: 452 full' },
      ],
    });
    if (result.kind !== 'events') throw new Error('unreachable');
    expect(result.events[0]).toMatchObject({
      trackingId: 'trk-h',
      taskId: 'task-1',
      headerMessageId: 'our-id@edm.example',
      customArgs: { edm_task_id: 'task-1' },
      occurredAt: new Date('2024-01-01T00:00:02.000Z'),
    });
  });

  it('marks bounces SES suppressed without trying', () => {
    const record = {
      eventType: 'Bounce',
      mail,
      bounce: {
        bounceType: 'Permanent',
        bounceSubType: 'OnAccountSuppressionList',
        bouncedRecipients: [{ emailAddress: 'a@x.example' }],
      },
    };
    expect(parseWebhook('ses', envelope(record), {})).toMatchObject({
      events: [{ type: 'hard_bounce', suppression: true }],
    });
  });

  it('emits one Send event per destination, and an open with several destinations has no recipient', () => {
    expect(parseWebhook('ses', envelope({ eventType: 'Send', mail, send: {} }), {})).toMatchObject({
      events: [{ recipient: 'a@x.example' }, { recipient: 'b@x.example' }],
    });
    const open = parseWebhook('ses', envelope({ eventType: 'Open', mail, open: {} }), {});
    expect(open).toMatchObject({ events: [{ type: 'open' }] });
    if (open.kind !== 'events') throw new Error('unreachable');
    expect(open.events[0].recipient).toBeUndefined();
  });

  it('stores Reject and unknown event types without a normalised type', () => {
    expect(
      parseWebhook('ses', envelope({ eventType: 'Reject', mail, reject: { reason: 'Bad content' } }), {}),
    ).toMatchObject({
      events: [{ rawType: 'Reject', type: null, reason: 'Bad content' }, { type: null }],
    });
  });

  it('a subscription record without a new opt-out is not an unsubscribe', () => {
    const subscription = {
      newTopicPreferences: {
        unsubscribeAll: false,
        topicSubscriptionStatus: [{ topicName: 'n', subscriptionStatus: 'OptIn' }],
      },
      oldTopicPreferences: {
        unsubscribeAll: false,
        topicSubscriptionStatus: [{ topicName: 'n', subscriptionStatus: 'OptOut' }],
      },
    };
    expect(
      parseWebhook(
        'ses',
        envelope({
          eventType: 'Subscription',
          mail: { ...mail, destination: ['a@x.example'] },
          subscription,
        }),
        {},
      ),
    ).toMatchObject({ events: [{ type: null }] });
  });

  it('reads raw message delivery (no envelope) with a body-hash dedupe key', () => {
    const result = parseWebhook(
      'ses',
      JSON.stringify({ eventType: 'Delivery', mail, delivery: { recipients: ['a@x.example'] } }),
      {},
    );
    expect(result).toMatchObject({
      events: [{ type: 'delivered', dedupeKey: expect.stringMatching(/^ses:sha256:/) }],
    });
  });

  it('returns an UnsubscribeConfirmation as a subscription message, not as events', () => {
    const body = JSON.stringify({
      Type: 'UnsubscribeConfirmation',
      TopicArn: 'arn:t',
      SubscribeURL: 'https://sns.x/?a',
      Token: 'tk',
    });
    expect(parseWebhook('ses', body, {})).toEqual({
      kind: 'sns-subscription',
      messageType: 'UnsubscribeConfirmation',
      topicArn: 'arn:t',
      subscribeUrl: 'https://sns.x/?a',
      token: 'tk',
    });
  });

  it.each([
    ['a text Message', JSON.stringify({ Type: 'Notification', Message: 'Successfully validated SNS topic' })],
    ['a record without mail', envelope({ eventType: 'Delivery' })],
    ['an unknown SNS type', JSON.stringify({ Type: 'Other' })],
    [
      'a confirmation without SubscribeURL',
      JSON.stringify({ Type: 'SubscriptionConfirmation', TopicArn: 'arn:t' }),
    ],
  ])('is invalid for %s', (_what, rawBody) => {
    expect(parseWebhook('ses', rawBody, {}).kind).toBe('invalid');
  });
});
