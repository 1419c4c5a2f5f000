import { randomUUID } from 'node:crypto';
import { OutgoingMail } from './mail-sender';

export interface SandboxAcceptance {
  providerMessageId: string;
  /** True when a mail with the same idempotency key had been accepted before; nothing new was accepted. */
  duplicate: boolean;
}

/**
 * Where the sandbox provider "delivers". It is what makes the sandbox idempotent: accepting the same
 * idempotency key twice answers with the first acceptance. Shared by every dispatcher replica in production
 * (a Postgres implementation lives with the persistence code); in memory for tests and single-process demos.
 */
export interface SandboxMailbox {
  accept(mail: OutgoingMail): Promise<SandboxAcceptance>;
}

export class InMemorySandboxMailbox implements SandboxMailbox {
  private readonly accepted = new Map<string, { providerMessageId: string; mail: OutgoingMail }>();

  constructor(private readonly newMessageId: () => string = () => `sandbox-${randomUUID()}`) {}

  async accept(mail: OutgoingMail): Promise<SandboxAcceptance> {
    const earlier = this.accepted.get(mail.idempotencyKey);
    if (earlier) return { providerMessageId: earlier.providerMessageId, duplicate: true };
    const providerMessageId = this.newMessageId();
    this.accepted.set(mail.idempotencyKey, { providerMessageId, mail });
    return { providerMessageId, duplicate: false };
  }

  /** Every mail accepted so far, in acceptance order. */
  mails(): OutgoingMail[] {
    return [...this.accepted.values()].map((entry) => entry.mail);
  }
}
