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

  it('does not read inherited properties as variables', () => {
    expect(renderTemplate('{{constructor}}{{__proto__}}', {}, false)).toBe('');
  });
});
