/* Small, total readers for the loosely typed parts of provider payloads. */
import type { WebhookHeaders } from './parsed-mail-event';

export const TRACKING_ID_KEY = 'edm_tracking_id';
export const TASK_ID_KEY = 'edm_task_id';
export const TRACKING_ID_HEADER = 'X-EDM-Tracking-Id';

export type JsonRecord = Record<string, unknown>;

export const asRecord = (value: unknown): JsonRecord | undefined =>
  value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as JsonRecord) : undefined;

export const asNonEmptyString = (value: unknown): string | undefined =>
  typeof value === 'string' && value.trim() !== '' ? value : undefined;

/** Ids sometimes arrive as numbers (EngageLab task_id is documented as int, sent as string). */
export const asIdString = (value: unknown): string | undefined =>
  typeof value === 'number' && Number.isFinite(value) ? String(value) : asNonEmptyString(value)?.trim();

export const headerValue = (headers: WebhookHeaders, name: string): string | undefined => {
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== wanted) continue;
    const first = typeof value === 'string' ? value : value?.[0];
    if (first !== undefined) return first;
  }
  return undefined;
};

export const stripAngleBrackets = (id: string): string =>
  id.trim().replace(/^<+/, '').replace(/>+$/, '').trim();

export const normaliseMessageId = (value: unknown): string | undefined => {
  const id = asIdString(value);
  const stripped = id === undefined ? undefined : stripAngleBrackets(id);
  return stripped === '' ? undefined : stripped;
};

/** `"Jane Doe" <Jane@Example.com>` and ` jane@example.com ` both become `jane@example.com`. */
export const normaliseRecipient = (value: unknown): string | undefined => {
  const raw = asNonEmptyString(value);
  if (raw === undefined) return undefined;
  const bracketed = /<([^<>]+)>/.exec(raw);
  const address = (bracketed ? bracketed[1] : raw).trim().toLowerCase();
  return address === '' ? undefined : address;
};

export const uniqueIds = (ids: ReadonlyArray<string | undefined>): string[] => [
  ...new Set(ids.filter((id): id is string => id !== undefined && id !== '')),
];

/** Custom data is stringly typed on our side; structured values keep their JSON form. */
export const toStringRecord = (value: unknown): Record<string, string> => {
  const record = asRecord(value);
  if (record === undefined) return {};
  const entries: Array<[string, string]> = [];
  for (const [key, v] of Object.entries(record)) {
    if (v === null || v === undefined) continue;
    entries.push([key, typeof v === 'string' ? v : JSON.stringify(v)]);
  }
  // fromEntries defines own properties, so a "__proto__" key cannot reach the prototype.
  return Object.fromEntries(entries);
};

export const correlationIds = (
  customArgs: Record<string, string>,
  echoedTrackingHeader?: string,
): { trackingId?: string; taskId?: string } => ({
  trackingId:
    asNonEmptyString(customArgs[TRACKING_ID_KEY])?.trim() ?? asNonEmptyString(echoedTrackingHeader)?.trim(),
  taskId: asNonEmptyString(customArgs[TASK_ID_KEY])?.trim(),
});

const validDate = (ms: number): Date | undefined => {
  if (!Number.isFinite(ms) || ms < 0) return undefined;
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? undefined : date;
};

const asFiniteNumber = (value: unknown): number | undefined => {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(value)) return Number(value);
  return undefined;
};

export const dateFromEpochSeconds = (value: unknown): Date | undefined => {
  const seconds = asFiniteNumber(value);
  return seconds === undefined ? undefined : validDate(Math.round(seconds * 1000));
};

export const dateFromEpochMillis = (value: unknown): Date | undefined => {
  const ms = asFiniteNumber(value);
  return ms === undefined ? undefined : validDate(Math.round(ms));
};

/** Date.parse alone accepts free text such as "1"; require an ISO-8601 date first. */
export const dateFromIso = (value: unknown): Date | undefined =>
  typeof value === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(value) ? validDate(Date.parse(value)) : undefined;

/** One line naming where the shape went wrong, for the stored `invalid` reason. */
export const describeIssue = (error: {
  issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }>;
}): string => {
  const issue = error.issues[0];
  if (issue === undefined) return 'unexpected shape';
  const path = issue.path.map(String).join('.');
  return path === '' ? issue.message : `${path}: ${issue.message}`;
};
