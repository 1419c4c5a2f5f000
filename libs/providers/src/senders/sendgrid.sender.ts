import { z } from 'zod';
import { classifyHttpFailure, excerpt } from './classify-http-failure';
import { httpSenderOptionsShape, joinUrl, parseJson } from './http-sender-support';
import { MailSender, OutgoingMail, SendOutcome } from './mail-sender';
import { sendHttpRequest } from './send-http-request';

export const sendgridConfigSchema = {
  credentials: z.object({ apiKey: z.string().min(1) }),
  options: z.looseObject(httpSenderOptionsShape('https://api.sendgrid.com')).prefault({}),
};

export interface SendgridSenderConfig {
  credentials: z.input<typeof sendgridConfigSchema.credentials>;
  options?: z.input<typeof sendgridConfigSchema.options>;
}

const sendgridErrorSchema = z.object({
  errors: z.array(z.object({ message: z.string().optional(), field: z.string().nullish() })),
});

/** SendGrid v3 Mail Send, `POST {baseUrl}/v3/mail/send`; accepted is 202 with the id in `X-Message-Id`. */
export class SendgridSender implements MailSender {
  readonly supportsIdempotency = false;
  private readonly credentials: z.output<typeof sendgridConfigSchema.credentials>;
  private readonly options: z.output<typeof sendgridConfigSchema.options>;

  constructor(config: SendgridSenderConfig) {
    this.credentials = sendgridConfigSchema.credentials.parse(config.credentials);
    this.options = sendgridConfigSchema.options.parse(config.options);
  }

  async send(mail: OutgoingMail, signal?: AbortSignal): Promise<SendOutcome> {
    const exchange = await sendHttpRequest({
      url: joinUrl(this.options.baseUrl, '/v3/mail/send'),
      headers: {
        authorization: `Bearer ${this.credentials.apiKey}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify(sendgridRequestBody(mail)),
      timeoutMs: this.options.timeoutMs,
      signal,
    });
    if (exchange.kind === 'failed') return classifyHttpFailure(exchange.failure);
    const { status, headers, body } = exchange;
    const messageId = headers.get('x-message-id');
    if (status >= 200 && status < 300 && messageId) return { kind: 'sent', providerMessageId: messageId };
    const reason = sendgridErrorReason(body);
    // The sender address is the service's configuration: rejecting it fails every mail of the service alike.
    if (status === 400 && reason.fields.some((field) => field.startsWith('from'))) {
      return { kind: 'account', reason: `HTTP 400: ${reason.text}` };
    }
    return classifyHttpFailure({
      stage: 'response',
      status,
      reason: reason.text,
      retryAfter: headers.get('retry-after'),
    });
  }
}

function sendgridRequestBody(mail: OutgoingMail) {
  // SendGrid requires text/plain before text/html.
  const content = [
    ...(mail.text !== undefined ? [{ type: 'text/plain', value: mail.text }] : []),
    ...(mail.html !== undefined ? [{ type: 'text/html', value: mail.html }] : []),
  ];
  return {
    personalizations: [{ to: [mail.to], custom_args: mail.customArgs }],
    from: mail.from,
    subject: mail.subject,
    content,
    headers: { ...mail.headers, 'Message-ID': mail.messageId },
  };
}

function sendgridErrorReason(body: string): { text: string; fields: string[] } {
  const parsed = sendgridErrorSchema.safeParse(parseJson(body));
  if (!parsed.success) return { text: excerpt(body), fields: [] };
  const { errors } = parsed.data;
  return {
    text: excerpt(errors.map((error) => [error.field, error.message].filter(Boolean).join(': ')).join('; ')),
    fields: errors.flatMap((error) => (error.field ? [error.field] : [])),
  };
}
