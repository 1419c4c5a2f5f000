import { isIP } from 'node:net';
import { z } from 'zod';

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const nonNegativeInt = z.coerce.number().int().min(0);

/** Names Express' `trust proxy` accepts for address ranges. */
const PROXY_RANGES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/**
 * Express' `trust proxy`: `false` (the peer is the client), `true` (the left-most
 * X-Forwarded-For, which any client can forge), a number of proxy hops, or comma-separated
 * addresses, subnets and range names of the proxies to trust.
 */
const trustProxy = z
  .string()
  .trim()
  .transform((value, context): boolean | number | string[] => {
    if (value === 'true' || value === 'false') return value === 'true';
    if (/^\d+$/.test(value)) return Number(value);
    const entries = value.split(',').map((entry) => entry.trim());
    const bad = entries.find((entry) => {
      if (PROXY_RANGES.has(entry)) return false;
      const [address, bits, extra] = entry.split('/');
      const family = isIP(address);
      if (!family || extra !== undefined) return true;
      return bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128));
    });
    if (bad === undefined) return entries;
    context.addIssue({
      code: 'custom',
      message: `true, false, a hop count, or addresses, subnets and loopback/linklocal/uniquelocal (not ${JSON.stringify(bad)})`,
    });
    return z.NEVER;
  });
const flag = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

/**
 * Every environment variable the platform reads, with its default. The README's configuration
 * table and the deployment manifests are checked against this object by tests.
 */
export const configShape = {
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  EDM_HOME: z.string().min(1).default('./.edm'),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .default('postgres://postgres@127.0.0.1:5432/edm'),
  DATABASE_POOL_SIZE: positiveInt.default(10),
  DATABASE_CREATE: flag.default(true),
  MIGRATIONS_RUN: flag.default(true),
  NATS_URL: z
    .string()
    .regex(/^(nats|tls):\/\//, 'must be a nats:// URL (comma-separate several servers)')
    .default('nats://127.0.0.1:4222'),
  NATS_STREAM: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, _ and - only')
    .default('EDM'),
  NATS_SUBJECT_PREFIX: z
    .string()
    .regex(/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/, 'dot-separated lower-case tokens')
    .default('edm'),
  NATS_DUPLICATE_WINDOW_MS: positiveInt.min(120_000).default(300_000),
  API_PORT: port.default(3000),
  DISPATCHER_PORT: port.default(3001),
  WEBHOOK_INGEST_PORT: port.default(3002),
  MONITOR_PORT: port.default(3003),
  HTTP_BODY_LIMIT_BYTES: positiveInt.default(1_048_576),
  HTTP_TRUST_PROXY: trustProxy.default(false),
  EDM_ADMIN_KEY: z.string().min(24, 'at least 24 characters').optional(),
  EDM_ENCRYPTION_KEY: z
    .string()
    .regex(/^[A-Za-z0-9+/]{43}=$/, 'a base64-encoded 32-byte key (openssl rand -base64 32)')
    .optional(),
  RELAY_ENABLED: flag.default(true),
  RELAY_BATCH_SIZE: positiveInt.max(10_000).default(1_000),
  RELAY_POLL_INTERVAL_MS: positiveInt.default(500),
  HEALTH_CHECK_TIMEOUT_MS: positiveInt.default(2_000),
  TRACKING_BASE_URL: z
    .string()
    .regex(/^https?:\/\/[^/]+(\/.*)?$/, 'an http(s) URL')
    .transform((url) => url.replace(/\/+$/, ''))
    .default('http://127.0.0.1:3002'),
  DISPATCH_LEASE_MS: positiveInt.min(1_000).default(120_000),
  DISPATCH_MAX_BATCH: positiveInt.max(1_000).default(50),
  DISPATCH_CONCURRENCY: positiveInt.max(1_000).default(32),
  DISPATCH_POLL_INTERVAL_MS: positiveInt.default(2_000),
  DISPATCH_SEND_TIMEOUT_MS: positiveInt.default(30_000),
  DISPATCH_MAX_ATTEMPTS: positiveInt.max(100).default(5),
  DISPATCH_RETRY_BASE_MS: positiveInt.default(30_000),
  DISPATCH_RETRY_MAX_MS: positiveInt.default(3_600_000),
  DISPATCH_FREEZE_COOLDOWN_MS: positiveInt.default(300_000),
  DISPATCH_REAPER_INTERVAL_MS: positiveInt.default(5_000),
  WEBHOOK_RATE_LIMIT_PER_SECOND: nonNegativeInt.default(2_000),
  WEBHOOK_RATE_LIMIT_BURST: positiveInt.default(4_000),
  TRACKING_RATE_LIMIT_PER_SECOND: nonNegativeInt.default(500),
  TRACKING_RATE_LIMIT_BURST: positiveInt.default(1_000),
  INGEST_POLL_INTERVAL_MS: positiveInt.default(1_000),
  INGEST_WORKERS: positiveInt.max(64).default(2),
  INGEST_YIELD_FACTOR: z.coerce.number().min(0).max(100).default(20),
  INGEST_MATCH_WINDOW_MS: positiveInt.default(259_200_000),
  INGEST_UNMATCHED_MAX_AGE_MS: positiveInt.default(3_600_000),
  INGEST_SOFT_BOUNCE_LIMIT: positiveInt.max(100).default(3),
  MONITOR_INTERVAL_MS: positiveInt.default(15_000),
  MONITOR_STUCK_LEASE_MS: positiveInt.default(600_000),
  MONITOR_WEBHOOK_SILENCE_MS: positiveInt.default(3_600_000),
  MONITOR_WEBHOOK_GRACE_MS: positiveInt.default(600_000),
  MONITOR_SERVICE_FAILURES: positiveInt.default(5),
  MONITOR_TASK_STALL_MS: positiveInt.default(900_000),
  MONITOR_UNMATCHED_RATIO: z.coerce.number().min(0).max(1).default(0.2),
  MONITOR_UNMATCHED_MIN_EVENTS: positiveInt.default(20),
  MONITOR_RELAY_LAG_EVENTS: positiveInt.default(10_000),
  MONITOR_CONSUMER_LAG_EVENTS: positiveInt.default(10_000),
  MONITOR_INGEST_BACKLOG_MS: positiveInt.default(60_000),
  MONITOR_ALERT_WEBHOOK_URL: z
    .string()
    .regex(/^https?:\/\//, 'an http(s) URL')
    .optional(),
  MONITOR_NOTIFY_COOLDOWN_MS: positiveInt.default(900_000),
  SHUTDOWN_TIMEOUT_MS: positiveInt.default(20_000),
} as const;

export const configSchema = z.object(configShape);

export type RawConfig = z.infer<typeof configSchema>;
export type ConfigVariable = keyof typeof configShape;
