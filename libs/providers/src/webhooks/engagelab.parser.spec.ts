import { parseWebhook } from './parse-webhook';
import type { ParsedMailEvent } from './parsed-mail-event';

const MESSAGE_ID = '1700000000000_1_2_3.sc-10_0_0_1-inbound';
const ITIME = 1700000000123;

const parse = (body: unknown): ParsedMailEvent[] => {
  const result = parseWebhook('engagelab', JSON.stringify(body), {});
  if (result.kind !== 'events') throw new Error(JSON.stringify(result));
  return result.events;
};

const statusCallback = (messageStatus: string, statusData: Record<string, unknown> = {}) => ({
  server: 'email',
  message_id: MESSAGE_ID,
  to: 'User@Example.com',
  itime: ITIME,
  custom_args: { edm_tracking_id: 'trk-1', edm_task_id: 'task-9', campaign: 'spring' },
  status: { message_status: messageStatus, status_data: { api_user: 'u', ...statusData } },
});

const responseCallback = (event: string, responseData: Record<string, unknown> = {}) => ({
  message_id: MESSAGE_ID,
  to: 'user@example.com',
  itime: ITIME,
  custom_args: {},
  response: { event, response_data: responseData },
});

describe('EngageLab status callbacks', () => {
  it.each([
    ['target', 'accepted'],
    ['sent', 'sent'],
    ['delivered', 'delivered'],
    ['soft_bounce', 'soft_bounce'],
    ['invalid_email', 'hard_bounce'],
    ['sending', null],
  ])('%s → %s', (status, type) => {
    expect(parse(statusCallback(status))[0]).toMatchObject({ rawType: status, type });
  });

  it('reads recipient, custom args, our ids and the derived per-recipient email id', () => {
    const [event] = parse(statusCallback('delivered'));
    expect(event).toMatchObject({
      recipient: 'user@example.com',
      trackingId: 'trk-1',
      taskId: 'task-9',
      customArgs: { edm_tracking_id: 'trk-1', edm_task_id: 'task-9', campaign: 'spring' },
      providerMessageId: MESSAGE_ID,
      messageIdCandidates: [`${MESSAGE_ID}0$User@Example.com`, MESSAGE_ID],
    });
    expect(event.occurredAt.getTime()).toBe(ITIME);
  });

  it('prefers the email_id EngageLab sends over a derived one', () => {
    const [event] = parse(statusCallback('sent', { email_id: `${MESSAGE_ID}3$User@Example.com` }));
    expect(event.messageIdCandidates).toEqual([`${MESSAGE_ID}3$User@Example.com`, MESSAGE_ID]);
  });

  it('reads custom_args sent as a JSON string', () => {
    const body = { ...statusCallback('sent'), custom_args: '{"edm_tracking_id":"trk-2"}' };
    expect(parse(body)[0].trackingId).toBe('trk-2');
  });

  it('fans a multi-recipient target out per recipient, each with its own email id and dedupe key', () => {
    const body = {
      message_id: MESSAGE_ID,
      itime: ITIME,
      status: {
        message_status: 'target',
        status_data: {
          tos: ['a@x.example', 'b@x.example'],
          email_ids: [`${MESSAGE_ID}0$a@x.example`, `${MESSAGE_ID}1$b@x.example`],
        },
      },
    };
    const events = parse(body);
    expect(events.map((e) => [e.recipient, e.messageIdCandidates[0]])).toEqual([
      ['a@x.example', `${MESSAGE_ID}0$a@x.example`],
      ['b@x.example', `${MESSAGE_ID}1$b@x.example`],
    ]);
    expect(events[0].dedupeKey).not.toBe(events[1].dedupeKey);
  });

  it.each([
    ['401', true],
    ['402', true],
    [406, false],
  ])('invalid_email sub-status %s: suppression %s', (subStatus, suppression) => {
    const [event] = parse(statusCallback('invalid_email', { sub_status: subStatus, message: 'rejected' }));
    expect(event).toMatchObject({ type: 'hard_bounce', suppression });
    expect(event.reason).toMatch(new RegExp(`^${subStatus} Invalid-.*: rejected$`));
  });

  it('reads the flat variant (message_status + status_data at top level)', () => {
    const body = {
      message_id: MESSAGE_ID,
      to: 'a@x.example',
      itime: ITIME,
      message_status: 'delivered',
      status_data: {},
    };
    expect(parse(body)[0]).toMatchObject({ type: 'delivered', recipient: 'a@x.example' });
  });

  it('reads an itime given in seconds', () => {
    expect(parse({ ...statusCallback('sent'), itime: 1700000000 })[0].occurredAt.getTime()).toBe(
      1700000000_000,
    );
  });

  it('gives identical callbacks the same dedupe key and different ones different keys', () => {
    const [a] = parse(statusCallback('delivered'));
    const [b] = parse(statusCallback('delivered'));
    const [c] = parse(statusCallback('sent'));
    expect(a.dedupeKey).toBe(b.dedupeKey);
    expect(a.dedupeKey).not.toBe(c.dedupeKey);
  });

  it('is invalid without itime or without any type field', () => {
    const { itime: _itime, ...noTime } = statusCallback('sent');
    expect(parseWebhook('engagelab', JSON.stringify(noTime), {})).toEqual({
      kind: 'invalid',
      reason: 'EngageLab event has no valid itime',
    });
    expect(parseWebhook('engagelab', JSON.stringify({ message_id: 'x', itime: ITIME }), {}).kind).toBe(
      'invalid',
    );
  });
});

describe('EngageLab response callbacks', () => {
  it.each([
    ['open', 'open'],
    ['click', 'click'],
    ['unsubscribe', 'unsubscribe'],
    ['report_spam', 'complaint'],
    ['route', null],
  ])('%s → %s', (event, type) => {
    expect(parse(responseCallback(event))[0]).toMatchObject({
      rawType: event,
      type,
      recipient: 'user@example.com',
    });
  });

  it('keeps the clicked url', () => {
    expect(parse(responseCallback('click', { url: 'https://example.com/a' }))[0].url).toBe(
      'https://example.com/a',
    );
  });

  it('reads the flat variant (event + response_data at top level)', () => {
    const body = {
      message_id: MESSAGE_ID,
      to: 'a@x.example',
      itime: ITIME,
      event: 'click',
      response_data: { url: 'https://e.example' },
    };
    expect(parse(body)[0]).toMatchObject({ type: 'click', url: 'https://e.example' });
  });
});
