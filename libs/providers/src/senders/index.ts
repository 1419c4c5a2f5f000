export type {
  MailAddress,
  OutgoingMail,
  SendOutcome,
  SendOutcomeKind,
  FailedSendOutcome,
  MailSender,
} from './mail-sender';
export type { HttpFailure } from './classify-http-failure';
export { classifyHttpFailure, parseRetryAfter } from './classify-http-failure';
export type { AwsCredentials, AwsRequestToSign, SignedAwsRequest } from './aws-sigv4';
export { signAwsRequest } from './aws-sigv4';
export type { EngagelabSenderConfig } from './engagelab.sender';
export { EngagelabSender, engagelabConfigSchema } from './engagelab.sender';
export type { SendgridSenderConfig } from './sendgrid.sender';
export { SendgridSender, sendgridConfigSchema } from './sendgrid.sender';
export type { MailgunSenderConfig } from './mailgun.sender';
export { MailgunSender, mailgunConfigSchema } from './mailgun.sender';
export type { SesSenderConfig } from './ses.sender';
export { SesSender, sesConfigSchema } from './ses.sender';
export type { PostmarkSenderConfig } from './postmark.sender';
export { PostmarkSender, postmarkConfigSchema } from './postmark.sender';
export type { SmtpSenderConfig } from './smtp.sender';
export { SmtpSender, smtpConfigSchema, classifySmtpFailure } from './smtp.sender';
export type { SandboxAcceptance, SandboxMailbox } from './sandbox-mailbox';
export { InMemorySandboxMailbox } from './sandbox-mailbox';
export type {
  SandboxCallbackEvent,
  SandboxCallbackEventType,
  SandboxCallbackFailure,
  SandboxCallbackPayload,
  SandboxOptions,
  SandboxSenderConfig,
  SandboxSenderDeps,
} from './sandbox.sender';
export {
  SANDBOX_CALLBACK_EVENT_TYPES,
  SandboxSender,
  sandboxConfigSchema,
  seededRandom,
} from './sandbox.sender';
export type {
  Provider,
  ProviderCredentials,
  ProviderOptions,
  MailSenderDeps,
  ProviderConfigIssue,
} from './create-mail-sender';
export {
  PROVIDERS,
  isProvider,
  providerConfigSchemas,
  InvalidProviderConfigError,
  createMailSender,
} from './create-mail-sender';
