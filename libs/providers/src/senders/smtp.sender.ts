import { Readable } from 'node:stream';
import MailComposer from 'nodemailer/lib/mail-composer';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { z } from 'zod';
import { errorMessage } from './error-message';
import { timeoutMsSchema } from './http-sender-support';
import { FailedSendOutcome, MailSender, OutgoingMail, SendOutcome } from './mail-sender';

export const smtpConfigSchema = {
  credentials: z
    .object({
      host: z.string().min(1),
      port: z.number().int().min(1).max(65535),
      /** true: TLS from the first byte (port 465); false: plain, upgraded with STARTTLS when offered. */
      secure: z.boolean(),
      user: z.string().min(1).optional(),
      pass: z.string().optional(),
    })
    .refine((credentials) => (credentials.user === undefined) === (credentials.pass === undefined), {
      message: 'user and pass go together',
      path: ['pass'],
    }),
  options: z
    .looseObject({
      /** Limit for connecting and for every wait on the server afterwards. */
      timeoutMs: timeoutMsSchema.default(30_000),
      /** Refuse to send over a connection that could not be upgraded with STARTTLS. */
      requireTLS: z.boolean().default(false),
      rejectUnauthorized: z.boolean().default(true),
      /** Name to introduce ourselves with in EHLO; the machine's host name when absent. */
      clientName: z.string().min(1).optional(),
    })
    .prefault({}),
};

export interface SmtpSenderConfig {
  credentials: z.input<typeof smtpConfigSchema.credentials>;
  options?: z.input<typeof smtpConfigSchema.options>;
}

/** An error as nodemailer's SMTP connection reports it (see NodemailerError in nodemailer/lib/errors). */
interface SmtpError {
  message: string;
  code?: string;
  command?: string;
  responseCode?: number;
}

/**
 * Sends over SMTP with nodemailer's SMTP connection, one connection per mail. The connection is driven step by
 * step, rather than through a transport, to know whether the message had been fully written when the
 * connection failed: before that the server cannot have taken the mail, after it the server may have.
 */
export class SmtpSender implements MailSender {
  readonly supportsIdempotency = false;
  private readonly credentials: z.output<typeof smtpConfigSchema.credentials>;
  private readonly options: z.output<typeof smtpConfigSchema.options>;

  constructor(config: SmtpSenderConfig) {
    this.credentials = smtpConfigSchema.credentials.parse(config.credentials);
    this.options = smtpConfigSchema.options.parse(config.options);
  }

  async send(mail: OutgoingMail, signal?: AbortSignal): Promise<SendOutcome> {
    let raw: Buffer;
    try {
      raw = await composeMessage(mail);
    } catch (error) {
      return { kind: 'permanent', reason: `message could not be composed: ${errorMessage(error)}` };
    }
    if (signal?.aborted) return { kind: 'transient', reason: 'aborted before connecting', notSent: true };
    return this.deliver(mail, raw, signal);
  }

  private deliver(mail: OutgoingMail, raw: Buffer, signal: AbortSignal | undefined): Promise<SendOutcome> {
    const { host, port, secure, user, pass } = this.credentials;
    const { timeoutMs, requireTLS, rejectUnauthorized, clientName } = this.options;
    const connection = new SMTPConnection({
      host,
      port,
      secure,
      requireTLS,
      name: clientName,
      tls: { rejectUnauthorized },
      connectionTimeout: timeoutMs,
      greetingTimeout: timeoutMs,
      socketTimeout: timeoutMs,
      logger: false,
    });
    let messageWritten = false;

    return new Promise<SendOutcome>((resolve) => {
      let settled = false;
      const settle = (outcome: SendOutcome): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', abort);
        if (outcome.kind === 'sent') connection.quit();
        else connection.close();
        resolve(outcome);
      };
      const fail = (error: SmtpError): void => settle(classifySmtpFailure(error, messageWritten));
      const abort = (): void => fail({ message: 'aborted by the caller', code: 'EABORT' });
      signal?.addEventListener('abort', abort, { once: true });
      // Socket-level failures are emitted rather than handed to the callback of the step in progress.
      connection.on('error', fail);

      const transmit = (): void => {
        const message = Readable.from([raw]);
        // It ends once all of it was handed on towards the socket; only the terminating dot follows.
        message.once('end', () => {
          messageWritten = true;
        });
        connection.send({ from: mail.from.email, to: [mail.to.email] }, message, (error, info) => {
          if (error) return fail(error);
          // Some servers (Microsoft 365, SES) replace our Message-ID and name theirs in the final reply.
          const messageId = info.serverMessageId ?? mail.messageId;
          settle({ kind: 'sent', providerMessageId: messageId.replace(/^<|>$/g, '') });
        });
      };

      connection.connect((connectError) => {
        if (connectError) return fail(connectError);
        if (user === undefined) return transmit();
        connection.login({ user, pass }, (loginError) => (loginError ? fail(loginError) : transmit()));
      });
    });
  }
}

/**
 * SMTP replies are decided by their code (RFC 5321: 4yz transient, 5yz permanent) and by which command they
 * answer: a refused sender or login concerns the whole account, a refused recipient or message only this mail.
 * Without a reply, the outcome hangs on whether the message had been fully written.
 */
export function classifySmtpFailure(error: SmtpError, messageWritten: boolean): FailedSendOutcome {
  const reason = [error.code, error.command, error.message].filter(Boolean).join(' ');
  const { responseCode, command = '' } = error;
  if (responseCode === undefined || responseCode < 400) {
    if (error.code === 'EAUTH' || error.code === 'ENOAUTH') return { kind: 'account', reason };
    return messageWritten
      ? { kind: 'ambiguous', reason: `connection lost after the message was sent: ${reason}` }
      : { kind: 'transient', reason: `not sent: ${reason}`, notSent: true };
  }
  // e.g. SES "454 Throttling failure: Daily message quota exceeded" is a 4yz that will not pass before tomorrow.
  if (/daily (message|sending) quota|quota exceeded|sending limit exceeded/i.test(error.message)) {
    return { kind: 'account', reason };
  }
  if (responseCode < 500 || responseCode === 503) return { kind: 'transient', reason };
  if (error.code === 'EAUTH' || command.startsWith('AUTH') || command === 'MAIL FROM') {
    return { kind: 'account', reason };
  }
  if (command === 'RCPT TO' || command === 'DATA') return { kind: 'permanent', reason };
  // A 5yz to the greeting or EHLO: the server refuses us, not this recipient.
  return { kind: 'account', reason };
}

function composeMessage(mail: OutgoingMail): Promise<Buffer> {
  return new MailComposer({
    from: { name: mail.from.name ?? '', address: mail.from.email },
    to: { name: mail.to.name ?? '', address: mail.to.email },
    subject: mail.subject,
    html: mail.html,
    text: mail.text,
    messageId: mail.messageId,
    headers: mail.headers,
    disableFileAccess: true,
    disableUrlAccess: true,
  })
    .compile()
    .build();
}
