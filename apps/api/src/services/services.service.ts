import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { APP_CONFIG, AppConfig } from '@edm/config';
import {
  keepMaskedSecrets,
  maskSecretOptions,
  openSecretOptions,
  sealCredentials,
  sealSecretOptions,
} from '@edm/domain';
import { EventData, newEvent, NewEvent } from '@edm/events';
import { EventStore, retryOnConflict, uuidv7 } from '@edm/event-store';
import { DomainError, notFound } from '@edm/platform';
import { providerConfigSchemas, Provider } from '@edm/providers';
import { commandMetadata } from '../auth/command-metadata';
import { Principal } from '../auth/principal';
import { CreateServiceInput, FreezeServiceInput, UpdateServiceInput } from './services.schemas';

interface ServiceRow {
  id: string;
  name: string;
  provider: Provider;
  from_email: string;
  from_name: string | null;
  pace: unknown;
  daily_quota: number | null;
  quota_reset_hour_utc: number;
  options: Record<string, unknown>;
  status: string;
  status_reason: string | null;
  frozen_until: Date | null;
  created_at: Date;
  updated_at: Date;
  quota_used: number | null;
  last_sent_at: Date | null;
  last_error: string | null;
  consecutive_failures: number | null;
  has_credentials: boolean;
}

/** Sending services. Credentials go in sealed and never come back out of the API. */
@Injectable()
export class ServicesService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly store: EventStore,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async create(principal: Principal, input: CreateServiceInput) {
    this.validateProviderConfig(input.provider, input.credentials ?? {}, input.options ?? {});
    const serviceId = uuidv7();
    await this.store.appendToStream(
      `service-${serviceId}`,
      'no_stream',
      [
        newEvent('ServiceCreated', {
          serviceId,
          accountId: principal.accountId,
          provider: input.provider,
          name: input.name,
          from: input.from,
          pace: input.pace,
          dailyQuota: input.dailyQuota ?? null,
          quotaResetHourUtc: input.quotaResetHourUtc ?? 0,
          options: sealSecretOptions(this.config.encryptionKey, input.options ?? {}),
          credentialsSealed: input.credentials
            ? sealCredentials(this.config.encryptionKey, input.credentials)
            : null,
        }),
      ],
      commandMetadata(principal),
    );
    return this.get(principal, serviceId);
  }

  async update(principal: Principal, id: string, input: UpdateServiceInput) {
    const current = await this.row(principal, id);
    const { credentials, options: given, ...rest } = input;
    // The options replace the stored ones as a whole, but a client that sends back what it read
    // sends masked secrets: those keep their stored values rather than becoming the mask.
    const options = given && keepMaskedSecrets(given, current.options);
    if (credentials || options) {
      this.validateProviderConfig(
        current.provider,
        credentials ?? {},
        openSecretOptions(this.config.encryptionKey, options ?? current.options),
        !credentials,
      );
    }
    const changes: EventData<'ServiceUpdated'>['changes'] = { ...rest };
    if (options) changes.options = sealSecretOptions(this.config.encryptionKey, options);
    if (credentials) changes.credentialsSealed = sealCredentials(this.config.encryptionKey, credentials);
    if (Object.keys(changes).length)
      await this.appendTo(principal, id, [newEvent('ServiceUpdated', { serviceId: id, changes })]);
    return this.get(principal, id);
  }

  async freeze(principal: Principal, id: string, input: FreezeServiceInput) {
    const current = await this.row(principal, id);
    if (current.status === 'disabled')
      throw new DomainError('INVALID_STATE', 'service is disabled; enable it first');
    await this.appendTo(principal, id, [
      newEvent('ServiceFrozen', { serviceId: id, reason: input.reason, until: input.until ?? null }),
    ]);
    return this.get(principal, id);
  }

  async unfreeze(principal: Principal, id: string) {
    const current = await this.row(principal, id);
    if (current.status !== 'frozen')
      throw new DomainError('INVALID_STATE', `service is ${current.status}, not frozen`);
    await this.appendTo(principal, id, [
      newEvent('ServiceUnfrozen', { serviceId: id, reason: 'unfrozen by operator' }),
    ]);
    return this.get(principal, id);
  }

  async setEnabled(principal: Principal, id: string, enabled: boolean, reason = 'disabled by operator') {
    const current = await this.row(principal, id);
    if (enabled && current.status === 'disabled')
      await this.appendTo(principal, id, [newEvent('ServiceEnabled', { serviceId: id })]);
    if (!enabled && current.status !== 'disabled')
      await this.appendTo(principal, id, [newEvent('ServiceDisabled', { serviceId: id, reason })]);
    return this.get(principal, id);
  }

  async list(principal: Principal) {
    const rows = await this.rows(principal.accountId);
    return { items: rows.map(present) };
  }

  async get(principal: Principal, id: string) {
    return present(await this.row(principal, id));
  }

  private async appendTo(principal: Principal, id: string, events: NewEvent[]) {
    await retryOnConflict(() =>
      this.store.appendToStream(`service-${id}`, 'any', events, commandMetadata(principal)),
    );
  }

  private validateProviderConfig(
    provider: Provider,
    credentials: unknown,
    options: unknown,
    credentialsOptional = false,
  ) {
    const schemas = providerConfigSchemas[provider];
    const problems: { field: string; message: string }[] = [];
    if (!credentialsOptional) {
      const c = schemas.credentials.safeParse(credentials);
      if (!c.success)
        problems.push(
          ...c.error.issues.map((i) => ({
            field: ['credentials', ...i.path.map(String)].join('.'),
            message: i.message,
          })),
        );
    }
    const o = schemas.options.safeParse(options);
    if (!o.success)
      problems.push(
        ...o.error.issues.map((i) => ({
          field: ['options', ...i.path.map(String)].join('.'),
          message: i.message,
        })),
      );
    if (problems.length)
      throw new DomainError('VALIDATION_FAILED', `invalid ${provider} configuration`, problems);
  }

  private async row(principal: Principal, id: string): Promise<ServiceRow> {
    if (!/^[0-9a-f-]{36}$/i.test(id)) throw notFound('service');
    const [row] = await this.rows(principal.accountId, id);
    if (!row) throw notFound('service');
    return row;
  }

  private rows(accountId: string, id?: string): Promise<ServiceRow[]> {
    return this.dataSource.query(
      `SELECT s.id, s.name, s.provider, s.from_email, s.from_name, s.pace, s.daily_quota, s.quota_reset_hour_utc, s.options,
              s.status, s.status_reason, s.frozen_until, s.created_at, s.updated_at, s.credentials_sealed IS NOT NULL AS has_credentials,
              r.quota_used, r.last_sent_at, r.last_error, r.consecutive_failures
         FROM sending_services s LEFT JOIN service_runtime r ON r.service_id = s.id
        WHERE s.account_id = $1 AND ($2::uuid IS NULL OR s.id = $2::uuid)
        ORDER BY s.created_at`,
      [accountId, id ?? null],
    );
  }
}

/** The API's view of a service: no credentials, and option values that look secret are masked. */
function present(row: ServiceRow) {
  const quotaUsed = row.quota_used ?? 0;
  return {
    id: row.id,
    name: row.name,
    provider: row.provider,
    from: { email: row.from_email, ...(row.from_name ? { name: row.from_name } : {}) },
    pace: row.pace,
    dailyQuota: row.daily_quota,
    quotaResetHourUtc: row.quota_reset_hour_utc,
    quotaUsed,
    quotaLeft: row.daily_quota === null ? null : Math.max(0, row.daily_quota - quotaUsed),
    options: maskSecretOptions(row.options),
    hasCredentials: row.has_credentials,
    status: row.status,
    statusReason: row.status_reason,
    frozenUntil: row.frozen_until,
    consecutiveFailures: row.consecutive_failures ?? 0,
    lastError: row.last_error,
    lastSentAt: row.last_sent_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
