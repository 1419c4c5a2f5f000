import { z } from 'zod';
import { classifyHttpFailure, excerpt } from './classify-http-failure';
import { basicAuthorization, httpSenderOptionsShape, joinUrl, parseJson } from './http-sender-support';
import { MailSender, OutgoingMail, SendOutcome, formatAddress } from './mail-sender';
import { sendHttpRequest } from './send-http-request';

export const mailgunConfigSchema = {
  credentials: z.object({ apiKey: z.string().min(1), domain: z.string().min(1) }),
  // EU accounts use https://api.eu.mailgun.net.
  options: z.looseObject(httpSenderOptionsShape('https://api.mailgun.net')).prefault({}),
};

export interface MailgunSenderConfig {
  credentials: z.input<typeof mailgunConfigSchema.credentials>;
  options?: z.input<typeof mailgunConfigSchema.options>;
}

const mailgunAnswerSchema = z.object({ id: z.string().min(1) });
const mailgunErrorSchema = z.object({ message: z.string() });

/** Mailgun Messages API, form-encoded `POST {baseUrl}/v3/{domain}/messages`, basic auth `api:KEY`. */
export class MailgunSender implements MailSender {
  readonly supportsIdempotency = false;
  private readonly credentials: z.output<typeof mailgunConfigSchema.credentials>;
  private readonly options: z.output<typeof mailgunConfigSchema.options>;

  constructor(config: MailgunSenderConfig) {
    this.credentials = mailgunConfigSchema.credentials.parse(config.credentials);
    this.options = mailgunConfigSchema.options.parse(config.options);
  }

  async send(mail: OutgoingMail, signal?: AbortSignal): Promise<SendOutcome> {
    const exchange = await sendHttpRequest({
      url: joinUrl(this.options.baseUrl, `/v3/${encodeURIComponent(this.credentials.domain)}/messages`),
      headers: {
        authorization: basicAuthorization('api', this.credentials.apiKey),
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
      },
      body: mailgunForm(mail).toString(),
      timeoutMs: this.options.timeoutMs,
      signal,
    });
    if (exchange.kind === 'failed') return classifyHttpFailure(exchange.failure);
    const { status, headers, body } = exchange;
    const json = parseJson(body);
    if (status >= 200 && status < 300) {
      const answer = mailgunAnswerSchema.safeParse(json);
      // Webhooks carry the id without the angle brackets Mailgun answers with.
      if (answer.success) return { kind: 'sent', providerMessageId: answer.data.id.replace(/^<|>$/g, '') };
    }
    const error = mailgunErrorSchema.safeParse(json);
    const reason = error.success ? error.data.message : excerpt(body);
    return classifyHttpFailure({ stage: 'response', status, reason, retryAfter: headers.get('retry-after') });
  }
}

function mailgunForm(mail: OutgoingMail): URLSearchParams {
  const form = new URLSearchParams();
  form.append('from', formatAddress(mail.from));
  form.append('to', formatAddress(mail.to));
  form.append('subject', mail.subject);
  if (mail.text !== undefined) form.append('text', mail.text);
  if (mail.html !== undefined) form.append('html', mail.html);
  form.append('h:Message-Id', mail.messageId);
  for (const [name, value] of Object.entries(mail.headers)) form.append(`h:${name}`, value);
  // User variables come back in every webhook as `user-variables`.
  for (const [name, value] of Object.entries(mail.customArgs)) form.append(`v:${name}`, value);
  return form;
}
