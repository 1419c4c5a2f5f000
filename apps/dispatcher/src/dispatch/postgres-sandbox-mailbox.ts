import { DataSource } from 'typeorm';
import { uuidv7 } from '@edm/event-store';
import { OutgoingMail, SandboxAcceptance, SandboxMailbox } from '@edm/providers';

interface Acceptance {
  key: string;
  messageId: string;
  serviceId: string;
  mail: OutgoingMail;
  /** When the "provider" got the request, as a real provider's clock would see it. */
  receivedAt: Date;
  resolve: (acceptance: SandboxAcceptance) => void;
  reject: (error: unknown) => void;
}

/**
 * The sandbox provider's "remote" mailbox, shared by every dispatcher replica: one row per
 * idempotency key, so a resent sub-task is answered with its first acceptance and never
 * delivered twice. Acceptances arriving together are written in one statement (group commit),
 * as a real provider's intake would: the sandbox must not be the bottleneck of a load test.
 */
export class SandboxMailboxWriter {
  private queue: Acceptance[] = [];
  private flushing = false;

  constructor(private readonly dataSource: DataSource) {}

  accept(serviceId: string, mail: OutgoingMail): Promise<SandboxAcceptance> {
    return new Promise((resolve, reject) => {
      this.queue.push({
        key: mail.idempotencyKey,
        messageId: `sandbox-${uuidv7()}`,
        serviceId,
        mail,
        receivedAt: new Date(),
        resolve,
        reject,
      });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.queue.length) {
      const batch = this.queue.splice(0, 500);
      // One statement cannot upsert a key twice: a repeated key waits for the next round.
      const seen = new Set<string>();
      const now: Acceptance[] = [];
      for (const a of batch) {
        if (seen.has(a.key)) this.queue.push(a);
        else {
          seen.add(a.key);
          now.push(a);
        }
      }
      try {
        const rows: { idempotency_key: string; provider_message_id: string; accepts: number }[] =
          await this.dataSource.query(
            `INSERT INTO sandbox_messages (idempotency_key, provider_message_id, service_id, tracking_id, recipient, subject, headers, accepted_at)
           SELECT u.key, u.message_id, u.service_id, u.tracking_id, u.recipient, u.subject, $7::jsonb -> (u.n::int - 1), u.at
             FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], $8::timestamptz[])
                  WITH ORDINALITY AS u(key, message_id, service_id, tracking_id, recipient, subject, at, n)
           ON CONFLICT (idempotency_key) DO UPDATE SET accepts = sandbox_messages.accepts + 1
           RETURNING idempotency_key, provider_message_id, accepts`,
            [
              now.map((a) => a.key),
              now.map((a) => a.messageId),
              now.map((a) => a.serviceId),
              now.map((a) => a.mail.trackingId),
              now.map((a) => a.mail.to.email),
              now.map((a) => a.mail.subject),
              // One JSON array: no per-element escaping as a text array would need.
              JSON.stringify(now.map((a) => a.mail.headers)),
              now.map((a) => a.receivedAt),
            ],
          );
        const byKey = new Map(rows.map((r) => [r.idempotency_key, r]));
        for (const a of now) {
          const row = byKey.get(a.key)!;
          a.resolve({ providerMessageId: row.provider_message_id, duplicate: row.accepts > 1 });
        }
      } catch (error) {
        now.forEach((a) => a.reject(error));
      }
    }
    this.flushing = false;
  }
}

export class PostgresSandboxMailbox implements SandboxMailbox {
  constructor(
    private readonly writer: SandboxMailboxWriter,
    private readonly serviceId: string,
  ) {}

  accept(mail: OutgoingMail): Promise<SandboxAcceptance> {
    return this.writer.accept(this.serviceId, mail);
  }
}
