import { EntityManager } from 'typeorm';
import { DomainEvent, isEvent } from '@edm/events';
import { Projection } from '@edm/event-store';

const COLUMN: Record<string, string> = {
  name: 'name',
  pace: 'pace',
  dailyQuota: 'daily_quota',
  quotaResetHourUtc: 'quota_reset_hour_utc',
  options: 'options',
  credentialsSealed: 'credentials_sealed',
};

export const servicesProjection: Projection = {
  name: 'sending-services',
  tables: ['sending_services'],
  handles: [
    'ServiceCreated',
    'ServiceUpdated',
    'ServiceFrozen',
    'ServiceUnfrozen',
    'ServiceDisabled',
    'ServiceEnabled',
  ],
  async apply(tx: EntityManager, events: readonly DomainEvent[]) {
    for (const event of events) {
      const at = event.occurredAt;
      if (isEvent(event, 'ServiceCreated')) {
        const d = event.data;
        await tx.query(
          `INSERT INTO sending_services (id, account_id, name, provider, from_email, from_name, pace, daily_quota,
             quota_reset_hour_utc, options, credentials_sealed, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)`,
          [
            d.serviceId,
            d.accountId,
            d.name,
            d.provider,
            d.from.email,
            d.from.name ?? null,
            JSON.stringify(d.pace),
            d.dailyQuota,
            d.quotaResetHourUtc,
            JSON.stringify(d.options),
            d.credentialsSealed,
            at,
          ],
        );
        await tx.query(`INSERT INTO service_runtime (service_id) VALUES ($1) ON CONFLICT DO NOTHING`, [
          d.serviceId,
        ]);
      } else if (isEvent(event, 'ServiceUpdated')) {
        const sets: string[] = [];
        const values: unknown[] = [event.data.serviceId, at];
        for (const [key, value] of Object.entries(event.data.changes)) {
          if (key === 'from') {
            const from = value as { email: string; name?: string };
            values.push(from.email, from.name ?? null);
            sets.push(`from_email = $${values.length - 1}`, `from_name = $${values.length}`);
          } else if (COLUMN[key]) {
            values.push(key === 'pace' || key === 'options' ? JSON.stringify(value) : value);
            sets.push(`${COLUMN[key]} = $${values.length}`);
          }
        }
        await tx.query(
          `UPDATE sending_services SET ${[...sets, 'updated_at = $2'].join(', ')} WHERE id = $1`,
          values,
        );
      } else if (isEvent(event, 'ServiceFrozen')) {
        await tx.query(
          `UPDATE sending_services SET status = 'frozen', status_reason = $2, frozen_until = $3, updated_at = $4
            WHERE id = $1 AND status <> 'disabled'`,
          [event.data.serviceId, event.data.reason, event.data.until, at],
        );
      } else if (isEvent(event, 'ServiceUnfrozen') || isEvent(event, 'ServiceEnabled')) {
        await tx.query(
          `UPDATE sending_services SET status = 'active', status_reason = NULL, frozen_until = NULL, updated_at = $2 WHERE id = $1`,
          [event.data.serviceId, at],
        );
      } else if (isEvent(event, 'ServiceDisabled')) {
        await tx.query(
          `UPDATE sending_services SET status = 'disabled', status_reason = $2, frozen_until = NULL, updated_at = $3 WHERE id = $1`,
          [event.data.serviceId, event.data.reason, at],
        );
      }
    }
  },
};
