import { z } from 'zod';
import { classifyHttpFailure, excerpt, failureOfKind } from './classify-http-failure';
import { httpSenderOptionsShape, joinUrl, parseJson } from './http-sender-support';
import { FailedSendOutcome, MailSender, OutgoingMail, SendOutcome, formatAddress } from './mail-sender';
import { sendHttpRequest } from './send-http-request';

export const postmarkConfigSchema = {
  credentials: z.object({ serverToken: z.string().min(1) }),
  options: z
    .looseObject({
      ...httpSenderOptionsShape('https://api.postmarkapp.com'),
      /** Marketing mail belongs on a broadcast stream; Postmark's default is the transactional one. */
      messageStream: z.string().min(1).optional(),
    })
    .prefault({}),
};

export interface PostmarkSenderConfig {
  credentials: z.input<typeof postmarkConfigSchema.credentials>;
  options?: z.input<typeof postmarkConfigSchema.options>;
}

const postmarkAnswerSchema = z.object({
  ErrorCode: z.number().optional(),
  Message: z.string().optional(),
  MessageID: z.string().optional(),
});

/**
 * Postmark's own error codes (https://postmarkapp.com/developer/api/overview#error-codes) say more than the
 * HTTP status, which is 422 for most of them.
 */
const POSTMARK_ERROR_KINDS: Record<number, FailedSendOutcome['kind']> = {
  10: 'account', // bad or missing server token
  100: 'transient', // maintenance
  300: 'permanent', // invalid email request
  400: 'account', // sender signature not found
  401: 'account', // sender signature not confirmed
  405: 'account', // not allowed to send (out of credits)
  406: 'permanent', // inactive recipient (bounced, complained or unsubscribed before)
  412: 'account', // account pending approval
  413: 'account', // account may not send
  429: 'transient', // rate limit
};

/** Postmark single send, `POST {baseUrl}/email` with `X-Postmark-Server-Token`. */
export class PostmarkSender implements MailSender {
  readonly supportsIdempotency = false;
  private readonly credentials: z.output<typeof postmarkConfigSchema.credentials>;
  private readonly options: z.output<typeof postmarkConfigSchema.options>;

  constructor(config: PostmarkSenderConfig) {
    this.credentials = postmarkConfigSchema.credentials.parse(config.credentials);
    this.options = postmarkConfigSchema.options.parse(config.options);
  }

  async send(mail: OutgoingMail, signal?: AbortSignal): Promise<SendOutcome> {
    const exchange = await sendHttpRequest({
      url: joinUrl(this.options.baseUrl, '/email'),
      headers: {
        'x-postmark-server-token': this.credentials.serverToken,
        'content-type': 'application/json',
        accept: 'application/json',
      },
      body: JSON.stringify(this.requestBody(mail)),
      timeoutMs: this.options.timeoutMs,
      signal,
    });
    if (exchange.kind === 'failed') return classifyHttpFailure(exchange.failure);
    const { status, headers, body } = exchange;
    const answer = postmarkAnswerSchema.safeParse(parseJson(body));
    const errorCode = answer.success ? (answer.data.ErrorCode ?? 0) : undefined;
    if (status >= 200 && status < 300 && errorCode === 0 && answer.data?.MessageID) {
      return { kind: 'sent', providerMessageId: answer.data.MessageID };
    }
    const reason =
      answer.success && answer.data.Message
        ? `${answer.data.Message} (ErrorCode ${errorCode})`
        : excerpt(body);
    const retryAfter = headers.get('retry-after');
    const kind = errorCode ? POSTMARK_ERROR_KINDS[errorCode] : undefined;
    if (kind) return failureOfKind(kind, `HTTP ${status}: ${reason}`, retryAfter);
    return classifyHttpFailure({ stage: 'response', status, reason, retryAfter });
  }

  private requestBody(mail: OutgoingMail) {
    return {
      From: formatAddress(mail.from),
      To: formatAddress(mail.to),
      Subject: mail.subject,
      HtmlBody: mail.html,
      TextBody: mail.text,
      Headers: Object.entries({ ...mail.headers, 'Message-ID': mail.messageId }).map(([Name, Value]) => ({
        Name,
        Value,
      })),
      Metadata: mail.customArgs,
      MessageStream: this.options.messageStream,
    };
  }
}
