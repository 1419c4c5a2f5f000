import { z } from 'zod';
import { signAwsRequest } from './aws-sigv4';
import { classifyHttpFailure, excerpt, failureOfKind } from './classify-http-failure';
import {
  DEFAULT_HTTP_TIMEOUT_MS,
  httpUrlSchema,
  joinUrl,
  parseJson,
  timeoutMsSchema,
} from './http-sender-support';
import {
  FailedSendOutcome,
  MailAddress,
  MailSender,
  OutgoingMail,
  SendOutcome,
  formatAddress,
} from './mail-sender';
import { sendHttpRequest } from './send-http-request';

/** An SNS topic ARN, in any partition (aws, aws-cn, aws-us-gov). */
const SNS_TOPIC_ARN = /^arn:aws(-[a-z]+)*:sns:[a-z]{2}(-[a-z]+)+-\d+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$/;

export const sesConfigSchema = {
  credentials: z.object({
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'an AWS region such as eu-west-1'),
    accessKeyId: z.string().min(1),
    secretAccessKey: z.string().min(1),
    sessionToken: z.string().min(1).optional(),
  }),
  options: z
    .looseObject({
      /** Default `https://email.{region}.amazonaws.com`, which depends on the credentials' region. */
      baseUrl: httpUrlSchema.optional(),
      timeoutMs: timeoutMsSchema.default(DEFAULT_HTTP_TIMEOUT_MS),
      configurationSetName: z.string().min(1).optional(),
      /**
       * The SNS topics whose notifications this service's webhook accepts. An SNS signature proves
       * only that SNS sent a message, from any AWS account's topic; with this set, a message or a
       * subscription from another topic is refused (401) and never confirmed.
       */
      webhookTopicArns: z
        .array(
          z
            .string()
            .regex(SNS_TOPIC_ARN, 'an SNS topic ARN such as arn:aws:sns:eu-west-1:123456789012:ses-events'),
        )
        .min(1)
        .max(100)
        .optional(),
    })
    .prefault({}),
};

export interface SesSenderConfig {
  credentials: z.input<typeof sesConfigSchema.credentials>;
  options?: z.input<typeof sesConfigSchema.options>;
}

const sesAnswerSchema = z.object({ MessageId: z.string().min(1) });
const sesErrorSchema = z.object({
  __type: z.string().optional(),
  code: z.string().optional(),
  message: z.string().optional(),
  Message: z.string().optional(),
});

/** Tag names and values may hold only these characters (SES v2 MessageTag). */
const SES_TAG_TEXT = /^[A-Za-z0-9_-]{1,256}$/;

/** SES error types (SES v2 SendEmail "Errors") whose meaning the HTTP status alone does not carry. */
const SES_ERROR_KINDS: Record<string, FailedSendOutcome['kind']> = {
  AccountSuspendedException: 'account',
  SendingPausedException: 'account',
  MailFromDomainNotVerifiedException: 'account',
  NotFoundException: 'account',
  UnrecognizedClientException: 'account',
  InvalidSignatureException: 'account',
  SignatureDoesNotMatch: 'account',
  InvalidClientTokenId: 'account',
  ExpiredTokenException: 'account',
  AccessDeniedException: 'account',
  TooManyRequestsException: 'transient',
  ThrottlingException: 'transient',
  Throttling: 'transient',
  LimitExceededException: 'transient',
  BadRequestException: 'permanent',
  MessageRejected: 'permanent',
};

/** Amazon SES v2 `SendEmail` (`POST /v2/email/outbound-emails`), signed with SigV4; no AWS SDK. */
export class SesSender implements MailSender {
  readonly supportsIdempotency = false;
  private readonly credentials: z.output<typeof sesConfigSchema.credentials>;
  private readonly options: z.output<typeof sesConfigSchema.options>;
  private readonly now: () => Date;

  constructor(config: SesSenderConfig, now: () => Date = () => new Date()) {
    this.credentials = sesConfigSchema.credentials.parse(config.credentials);
    this.options = sesConfigSchema.options.parse(config.options);
    this.now = now;
  }

  async send(mail: OutgoingMail, signal?: AbortSignal): Promise<SendOutcome> {
    const { region, accessKeyId, secretAccessKey, sessionToken } = this.credentials;
    const baseUrl = this.options.baseUrl ?? `https://email.${region}.amazonaws.com`;
    const url = joinUrl(baseUrl, '/v2/email/outbound-emails');
    const body = JSON.stringify(this.requestBody(mail));
    const signed = signAwsRequest(
      { method: 'POST', url, headers: { 'content-type': 'application/json' }, body, region, service: 'ses' },
      { accessKeyId, secretAccessKey, sessionToken },
      this.now(),
    );
    const exchange = await sendHttpRequest({
      url,
      headers: signed.headers,
      body,
      timeoutMs: this.options.timeoutMs,
      signal,
    });
    if (exchange.kind === 'failed') return classifyHttpFailure(exchange.failure);
    const { status, headers } = exchange;
    const json = parseJson(exchange.body);
    if (status >= 200 && status < 300) {
      const answer = sesAnswerSchema.safeParse(json);
      if (answer.success) return { kind: 'sent', providerMessageId: answer.data.MessageId };
    }
    const { type, message } = sesError(headers, json);
    const reason = [type, message ?? excerpt(exchange.body)].filter(Boolean).join(': ');
    const retryAfter = headers.get('retry-after');
    const kind = type ? sesErrorKind(type, message ?? '', mail) : undefined;
    if (kind) return failureOfKind(kind, `HTTP ${status}: ${reason}`, retryAfter);
    return classifyHttpFailure({ stage: 'response', status, reason, retryAfter });
  }

  private requestBody(mail: OutgoingMail) {
    return {
      FromEmailAddress: sesAddress(mail.from),
      Destination: { ToAddresses: [sesAddress(mail.to)] },
      Content: {
        Simple: {
          Subject: { Data: mail.subject, Charset: 'UTF-8' },
          Body: {
            ...(mail.html !== undefined && { Html: { Data: mail.html, Charset: 'UTF-8' } }),
            ...(mail.text !== undefined && { Text: { Data: mail.text, Charset: 'UTF-8' } }),
          },
          // No Message-ID: SES replaces it with its own, and its MessageId is what events carry.
          Headers: Object.entries(mail.headers).map(([Name, Value]) => ({ Name, Value })),
        },
      },
      // Tags come back in every SES event (`mail.tags`); values outside the allowed alphabet would fail the
      // whole send, and the tracking id still travels in X-EDM-Tracking-Id.
      EmailTags: Object.entries(mail.customArgs)
        .filter(([name, value]) => SES_TAG_TEXT.test(name) && SES_TAG_TEXT.test(value))
        .map(([Name, Value]) => ({ Name, Value })),
      ...(this.options.configurationSetName && { ConfigurationSetName: this.options.configurationSetName }),
    };
  }
}

/** SES takes a display name beyond ASCII only as an RFC 2047 encoded word. */
function sesAddress(address: MailAddress): string {
  if (!address.name || /^[\x20-\x7e]*$/.test(address.name)) return formatAddress(address);
  return `=?UTF-8?B?${Buffer.from(address.name, 'utf8').toString('base64')}?= <${address.email}>`;
}

/** The error type arrives in a header as `Type:namespace`, or in the body as `namespace#Type` or `code`. */
function sesError(headers: Headers, json: unknown): { type?: string; message?: string } {
  const body = sesErrorSchema.safeParse(json);
  const rawType =
    headers.get('x-amzn-errortype') ?? (body.success ? (body.data.__type ?? body.data.code) : undefined);
  return {
    type: rawType?.split(':')[0].split('#').pop(),
    message: body.success ? (body.data.message ?? body.data.Message) : undefined,
  };
}

function sesErrorKind(
  type: string,
  message: string,
  mail: OutgoingMail,
): FailedSendOutcome['kind'] | undefined {
  // SES throttles both "Maximum sending rate exceeded" and "Daily message quota exceeded" with the same type
  // (https://docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html); only the rate passes soon.
  if (/daily message quota/i.test(message)) return 'account';
  // In the SES sandbox an unverified address is refused; when it is our own sender, no mail can go out.
  const namesOurSender = message.toLowerCase().includes(mail.from.email.toLowerCase());
  if (type === 'MessageRejected' && namesOurSender) return 'account';
  return SES_ERROR_KINDS[type];
}
