import { DataSource } from 'typeorm';
import { OutgoingMail, SandboxAcceptance, SandboxMailbox } from '@edm/providers';
import { uuidv7 } from '@edm/event-store';

/**
 * The sandbox provider's mailbox, shared by every dispatcher replica: one row per idempotency
 * key, so a resent sub-task is answered with its first acceptance and never delivered twice.
 */
export class PostgresSandboxMailbox implements SandboxMailbox {
  constructor(
    private readonly dataSource: DataSource,
    private readonly serviceId: string,
  ) {}

  async accept(mail: OutgoingMail): Promise<SandboxAcceptance> {
    const [row]: { provider_message_id: string; accepts: number }[] = await this.dataSource.query(
      `INSERT INTO sandbox_messages (idempotency_key, provider_message_id, service_id, tracking_id, recipient, subject, headers, accepted_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (idempotency_key) DO UPDATE SET accepts = sandbox_messages.accepts + 1
       RETURNING provider_message_id, accepts`,
      [
        mail.idempotencyKey,
        `sandbox-${uuidv7()}`,
        this.serviceId,
        mail.trackingId,
        mail.to.email,
        mail.subject,
        JSON.stringify(mail.headers),
        // When the "provider" got the request, as a real provider's clock would see it, not
        // when its bookkeeping row reached the database.
        new Date(),
      ],
    );
    return { providerMessageId: row.provider_message_id, duplicate: row.accepts > 1 };
  }
}
