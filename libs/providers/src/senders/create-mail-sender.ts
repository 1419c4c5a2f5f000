import { z } from 'zod';
import { EngagelabSender, engagelabConfigSchema } from './engagelab.sender';
import { MailgunSender, mailgunConfigSchema } from './mailgun.sender';
import { MailSender } from './mail-sender';
import { PostmarkSender, postmarkConfigSchema } from './postmark.sender';
import { SandboxSender, SandboxSenderDeps, sandboxConfigSchema } from './sandbox.sender';
import { SendgridSender, sendgridConfigSchema } from './sendgrid.sender';
import { SesSender, sesConfigSchema } from './ses.sender';
import { SmtpSender, smtpConfigSchema } from './smtp.sender';

export const PROVIDERS = ['engagelab', 'sendgrid', 'mailgun', 'ses', 'postmark', 'smtp', 'sandbox'] as const;

export type Provider = (typeof PROVIDERS)[number];

export const isProvider = (value: unknown): value is Provider =>
  typeof value === 'string' && (PROVIDERS as readonly string[]).includes(value);

interface ProviderConfigSchema {
  credentials: z.ZodType;
  options: z.ZodType;
}

/** What a service of each provider must hold in `credentials` and `options`; the API validates with these. */
export const providerConfigSchemas = {
  engagelab: engagelabConfigSchema,
  sendgrid: sendgridConfigSchema,
  mailgun: mailgunConfigSchema,
  ses: sesConfigSchema,
  postmark: postmarkConfigSchema,
  smtp: smtpConfigSchema,
  sandbox: sandboxConfigSchema,
} as const satisfies Record<Provider, ProviderConfigSchema>;

export type ProviderCredentials<P extends Provider> = z.input<
  (typeof providerConfigSchemas)[P]['credentials']
>;
export type ProviderOptions<P extends Provider> = z.input<(typeof providerConfigSchemas)[P]['options']>;

export interface MailSenderDeps {
  /** Required to create a `sandbox` sender. */
  sandbox?: SandboxSenderDeps;
}

export interface ProviderConfigIssue {
  /** e.g. `credentials.apiKey`, `options.callbacks.open` */
  path: string;
  message: string;
}

export class InvalidProviderConfigError extends Error {
  readonly code = 'INVALID_PROVIDER_CONFIG';

  constructor(
    readonly provider: Provider,
    readonly issues: ProviderConfigIssue[],
  ) {
    super(
      `invalid ${provider} configuration: ${issues.map((issue) => `${issue.path}: ${issue.message}`).join('; ')}`,
    );
    this.name = 'InvalidProviderConfigError';
  }
}

/** Builds the sender of a service; throws InvalidProviderConfigError when credentials or options do not fit. */
export function createMailSender(
  provider: Provider,
  credentials: unknown,
  options: unknown,
  deps: MailSenderDeps = {},
): MailSender {
  switch (provider) {
    case 'engagelab':
      return new EngagelabSender(parseConfig(provider, engagelabConfigSchema, credentials, options));
    case 'sendgrid':
      return new SendgridSender(parseConfig(provider, sendgridConfigSchema, credentials, options));
    case 'mailgun':
      return new MailgunSender(parseConfig(provider, mailgunConfigSchema, credentials, options));
    case 'ses':
      return new SesSender(parseConfig(provider, sesConfigSchema, credentials, options));
    case 'postmark':
      return new PostmarkSender(parseConfig(provider, postmarkConfigSchema, credentials, options));
    case 'smtp':
      return new SmtpSender(parseConfig(provider, smtpConfigSchema, credentials, options));
    case 'sandbox': {
      const config = parseConfig(provider, sandboxConfigSchema, credentials, options);
      if (!deps.sandbox) throw new Error('a sandbox sender needs deps.sandbox with its mailbox');
      return new SandboxSender(config, deps.sandbox);
    }
  }
}

function parseConfig<Credentials extends z.ZodType, Options extends z.ZodType>(
  provider: Provider,
  schemas: { credentials: Credentials; options: Options },
  credentials: unknown,
  options: unknown,
): { credentials: z.output<Credentials>; options: z.output<Options> } {
  const parsedCredentials = schemas.credentials.safeParse(credentials);
  const parsedOptions = schemas.options.safeParse(options);
  if (parsedCredentials.success && parsedOptions.success) {
    return { credentials: parsedCredentials.data, options: parsedOptions.data };
  }
  throw new InvalidProviderConfigError(provider, [
    ...issuesOf('credentials', parsedCredentials.error),
    ...issuesOf('options', parsedOptions.error),
  ]);
}

function issuesOf(root: string, error: z.ZodError | undefined): ProviderConfigIssue[] {
  return (error?.issues ?? []).map((issue) => ({
    path: [root, ...issue.path.map(String)].join('.'),
    message: issue.message,
  }));
}
