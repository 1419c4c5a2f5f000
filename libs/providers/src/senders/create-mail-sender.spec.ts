import { EngagelabSender } from './engagelab.sender';
import {
  InvalidProviderConfigError,
  PROVIDERS,
  createMailSender,
  providerConfigSchemas,
} from './create-mail-sender';
import { MailgunSender } from './mailgun.sender';
import { PostmarkSender } from './postmark.sender';
import { InMemorySandboxMailbox } from './sandbox-mailbox';
import { SandboxSender } from './sandbox.sender';
import { SendgridSender } from './sendgrid.sender';
import { SesSender } from './ses.sender';
import { SmtpSender } from './smtp.sender';

describe('createMailSender', () => {
  const sandboxDeps = { sandbox: { mailbox: new InMemorySandboxMailbox() } };

  it.each([
    ['engagelab', { apiUser: 'api_user', apiKey: 'api_key' }, EngagelabSender],
    ['sendgrid', { apiKey: 'SG.key' }, SendgridSender],
    ['mailgun', { apiKey: 'key', domain: 'mg.example.com' }, MailgunSender],
    ['ses', { region: 'eu-west-1', accessKeyId: 'AKID', secretAccessKey: 'secret' }, SesSender],
    ['postmark', { serverToken: 'token' }, PostmarkSender],
    ['smtp', { host: 'smtp.example.com', port: 587, secure: false, user: 'u', pass: 'p' }, SmtpSender],
    ['sandbox', undefined, SandboxSender],
  ] as const)('builds the %s sender', (provider, credentials, senderClass) => {
    const sender = createMailSender(provider, credentials, undefined, sandboxDeps);

    expect(sender).toBeInstanceOf(senderClass);
    expect(sender.supportsIdempotency).toBe(provider === 'sandbox');
  });

  it('covers every provider', () => {
    expect(PROVIDERS).toEqual(['engagelab', 'sendgrid', 'mailgun', 'ses', 'postmark', 'smtp', 'sandbox']);
    expect(Object.keys(providerConfigSchemas).sort()).toEqual([...PROVIDERS].sort());
  });

  it('names every field that does not fit', () => {
    const attempt = () =>
      createMailSender('mailgun', { apiKey: '' }, { baseUrl: 'not a url', timeoutMs: -1 });

    expect(attempt).toThrow(InvalidProviderConfigError);
    try {
      attempt();
    } catch (error) {
      expect(error).toMatchObject({
        code: 'INVALID_PROVIDER_CONFIG',
        provider: 'mailgun',
        issues: [
          { path: 'credentials.apiKey', message: expect.any(String) },
          { path: 'credentials.domain', message: expect.any(String) },
          { path: 'options.baseUrl', message: expect.any(String) },
          { path: 'options.timeoutMs', message: expect.any(String) },
        ],
      });
    }
  });

  it('refuses half of an SMTP login', () => {
    expect(() => createMailSender('smtp', { host: 'h', port: 25, secure: false, user: 'u' }, {})).toThrow(
      /credentials\.pass: user and pass go together/,
    );
  });

  it('needs a mailbox for the sandbox', () => {
    expect(() => createMailSender('sandbox', {}, {})).toThrow(/mailbox/);
  });
});

describe('providerConfigSchemas', () => {
  it('fills in the public endpoint and a timeout', () => {
    expect(providerConfigSchemas.sendgrid.options.parse(undefined)).toEqual({
      baseUrl: 'https://api.sendgrid.com',
      timeoutMs: 15_000,
    });
  });

  it("takes SES's webhook topics as a list of SNS topic ARNs, and names what is not one", () => {
    const topics = [
      'arn:aws:sns:eu-west-1:123456789012:ses-events',
      'arn:aws-cn:sns:cn-north-1:123456789012:x.fifo',
    ];
    expect(providerConfigSchemas.ses.options.parse({ webhookTopicArns: topics })).toMatchObject({
      webhookTopicArns: topics,
    });
    for (const webhookTopicArns of [
      [],
      ['ses-events'],
      ['arn:aws:sqs:eu-west-1:123456789012:q'],
      'arn:aws:sns:eu-west-1:123456789012:t',
    ])
      expect(providerConfigSchemas.ses.options.safeParse({ webhookTopicArns }).success).toBe(false);
  });

  it('keeps settings in options that are not the sender’s, such as webhook secrets', () => {
    expect(providerConfigSchemas.mailgun.options.parse({ webhookSigningKey: 'whsec' })).toMatchObject({
      webhookSigningKey: 'whsec',
    });
  });
});
