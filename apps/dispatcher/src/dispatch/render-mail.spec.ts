import { renderMail, renderTemplate } from './render-mail';

describe('renderMail', () => {
  const mail = renderMail({
    subTaskId: 'st-1',
    taskId: 'task-1',
    trackingId: 'trk1',
    email: 'ada@example.com',
    contactName: 'Ada <Lovelace>',
    attributes: { city: 'London', plan: 'gold' },
    subject: 'Hello {{name}} from {{ city }}',
    html: '<p>Hi {{name}}, your plan: {{attributes.plan}}{{missing}}</p>',
    text: 'Hi {{name}} ({{email}})',
    from: { email: 'news@mail.example.com', name: 'News' },
    trackingBaseUrl: 'https://hooks.example.com',
    linkKey: null,
  });

  it('renders per contact, escaping values in HTML only', () => {
    expect(mail.subject).toBe('Hello Ada <Lovelace> from London');
    expect(mail.html).toBe('<p>Hi Ada &lt;Lovelace&gt;, your plan: gold</p>');
    expect(mail.text).toBe('Hi Ada <Lovelace> (ada@example.com)');
  });

  it('carries the tracking id in the header, our Message-ID and the custom args', () => {
    expect(mail.headers['X-EDM-Tracking-Id']).toBe('trk1');
    expect(mail.messageId).toBe('<trk1@mail.example.com>');
    expect(mail.customArgs).toEqual({
      edm_tracking_id: 'trk1',
      edm_task_id: 'task-1',
      edm_sub_task_id: 'st-1',
    });
    expect(mail.idempotencyKey).toBe('st-1');
  });

  it('offers one-click unsubscribe (RFC 8058)', () => {
    expect(mail.headers['List-Unsubscribe']).toBe('<https://hooks.example.com/t/unsubscribe/trk1>');
    expect(mail.headers['List-Unsubscribe-Post']).toBe('List-Unsubscribe=One-Click');
  });

  it('adds signed click links and the open pixel only when asked (SMTP)', () => {
    const tracked = renderMail({
      subTaskId: 'st-2',
      taskId: 't',
      trackingId: 'trk2',
      email: 'b@example.com',
      contactName: null,
      attributes: {},
      subject: 's',
      html: '<a href="https://shop.example.com/">Shop</a>',
      text: null,
      from: { email: 'a@example.com' },
      trackingBaseUrl: 'https://hooks.example.com',
      linkKey: Buffer.alloc(32, 1),
    });
    expect(tracked.html).toContain(
      'https://hooks.example.com/t/click/trk2?u=https%3A%2F%2Fshop.example.com%2F&amp;s=',
    );
    expect(tracked.html).toContain('https://hooks.example.com/t/open/trk2.gif');
    expect(mail.html).not.toContain('/t/open/');
  });

  it('does not read inherited properties as variables', () => {
    expect(renderTemplate('{{constructor}}{{__proto__}}', {}, false)).toBe('');
  });
});
