import { z } from 'zod';
import { classifyHttpFailure, excerpt } from './classify-http-failure';
import { basicAuthorization, httpSenderOptionsShape, joinUrl, parseJson } from './http-sender-support';
import { MailSender, OutgoingMail, SendOutcome, formatAddress } from './mail-sender';
import { sendHttpRequest } from './send-http-request';

export const engagelabConfigSchema = {
  credentials: z.object({ apiUser: z.string().min(1), apiKey: z.string().min(1) }),
  options: z.looseObject(httpSenderOptionsShape('https://email.api.engagelab.cc')).prefault({}),
};

export interface EngagelabSenderConfig {
  credentials: z.input<typeof engagelabConfigSchema.credentials>;
  options?: z.input<typeof engagelabConfigSchema.options>;
}

const engagelabAnswerSchema = z.object({ email_ids: z.array(z.string()) });

/** EngageLab send API, `POST {baseUrl}/v1/mail/send` (shared/provider-payloads/engagelab-send-request.json). */
export class EngagelabSender implements MailSender {
  /** `request_id` only labels a request; EngageLab does not document deduplicating on it. */
  readonly supportsIdempotency = false;
  private readonly credentials: z.output<typeof engagelabConfigSchema.credentials>;
  private readonly options: z.output<typeof engagelabConfigSchema.options>;

  constructor(config: EngagelabSenderConfig) {
    this.credentials = engagelabConfigSchema.credentials.parse(config.credentials);
    this.options = engagelabConfigSchema.options.parse(config.options);
  }

  async send(mail: OutgoingMail, signal?: AbortSignal): Promise<SendOutcome> {
    const exchange = await sendHttpRequest({
      url: joinUrl(this.options.baseUrl, '/v1/mail/send'),
      headers: {
        authorization: basicAuthorization(this.credentials.apiUser, this.credentials.apiKey),
        'content-type': 'application/json;charset=utf-8',
        accept: 'application/json',
      },
      body: JSON.stringify(engagelabRequestBody(mail)),
      timeoutMs: this.options.timeoutMs,
      signal,
    });
    if (exchange.kind === 'failed') return classifyHttpFailure(exchange.failure);
    const { status, headers, body } = exchange;
    if (status >= 200 && status < 300) {
      const emailId = recipientEmailId(body, mail.to.email);
      if (emailId) return { kind: 'sent', providerMessageId: emailId };
    }
    return classifyHttpFailure({
      stage: 'response',
      status,
      reason: excerpt(body),
      retryAfter: headers.get('retry-after'),
    });
  }
}

function engagelabRequestBody(mail: OutgoingMail) {
  return {
    from: formatAddress(mail.from),
    to: [mail.to.email],
    body: {
      subject: mail.subject,
      content: { html: mail.html, text: mail.text },
      headers: { ...mail.headers, 'Message-ID': mail.messageId },
    },
    // Top level, not inside `body`: only there is it echoed back in webhooks.
    custom_args: mail.customArgs,
    request_id: mail.idempotencyKey.slice(0, 128),
  };
}

/**
 * The per-recipient id `<message_id><index>$<recipient>` is what later callbacks refer to, so it, not the
 * request's message id, is the provider message id.
 */
function recipientEmailId(body: string, recipient: string): string | undefined {
  const parsed = engagelabAnswerSchema.safeParse(parseJson(body));
  if (!parsed.success) return undefined;
  const ids = parsed.data.email_ids;
  const suffix = `$${recipient}`.toLowerCase();
  return ids.find((id) => id.toLowerCase().endsWith(suffix)) ?? ids[0];
}
