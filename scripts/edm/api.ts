import { CliError, EXIT } from './errors';

/** What the CLI reads from the API (Appendix A of the spec); fields it does not use are left out. */
export interface Counts {
  total: number;
  pending: number;
  allocated: number;
  sending: number;
  sent: number;
  delivered: number;
  opened: number;
  clicked: number;
  bounced: number;
  complained: number;
  unsubscribed: number;
  failed: number;
  unknown: number;
  skipped: number;
  cancelled: number;
}

export type TaskStatus = 'scheduled' | 'sending' | 'paused' | 'completed' | 'cancelled';

export interface TaskSummary {
  id: string;
  name: string;
  status: TaskStatus;
  total: number;
  priority: number;
  scheduledAt: string | null;
  createdAt: string;
  completedAt: string | null;
}

export interface TaskView extends TaskSummary {
  subject: string;
  updatedAt: string;
  counts: Counts;
  services: { serviceId: string; name: string; status: string; counts: Counts }[];
}

export type Pace = { intervalMs: number } | { perSecond: number; burst?: number };

export interface Service {
  id: string;
  name: string;
  provider: string;
  pace: Pace;
  dailyQuota: number | null;
  quotaUsed: number;
  quotaLeft: number | null;
  status: string;
  statusReason: string | null;
  frozenUntil: string | null;
  consecutiveFailures: number;
  lastError: string | null;
  lastSentAt: string | null;
  createdAt: string;
}

export interface Alert {
  id: string;
  kind: string;
  subject: string;
  severity: string;
  message: string;
  status: string;
  firstSeenAt: string;
  resolvedAt: string | null;
}

export interface SubTask {
  id: string;
  email: string;
  status: string;
  serviceId: string | null;
  sentAt: string | null;
  deliveredAt: string | null;
  openedAt: string | null;
  clickedAt: string | null;
  updatedAt: string;
}

export interface Diagnosis {
  task: { id: string; name: string; status: string; createdAt: string; completedAt: string | null };
  counts: Record<string, number>;
  services: {
    id: string;
    name: string;
    provider: string;
    status: string;
    statusReason: string | null;
    pace: Pace;
    dailyQuota: number | null;
    quotaUsed: number;
    quotaLeft: number | null;
    consecutiveFailures: number;
    lastError: string | null;
    lastSentAt: string | null;
    lastWebhookAt: string | null;
    usable: boolean;
  }[];
  webhooks: {
    byType: { type: string; matchStatus: string; strategy: string | null; count: number }[];
    unmatchedForTheseServices: number;
  };
  stuckLeases: { count: number; since: string | null };
  alerts: {
    id: string;
    kind: string;
    subject: string;
    severity: string;
    message: string;
    firstSeenAt: string;
  }[];
  findings: string[];
  verdict: string;
}

export interface RepairReport {
  releasedLeases: number;
  retriedWebhookEvents: number;
  completed: boolean;
  subTasksOutOfStepWithEvents: number;
  dispatcherWoken: boolean;
  changed: boolean;
  diagnosis: Diagnosis;
}

export interface List<T> {
  items: T[];
  nextCursor?: string | null;
}

interface ErrorBody {
  error?: { code?: string; message?: string; fields?: { field: string; message: string }[] };
}

const REQUEST_TIMEOUT_MS = 15_000;

/** The cause of a failed fetch, as a short code: ECONNREFUSED, ENOTFOUND, timeout… */
function networkReason(error: unknown): string {
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError'))
    return 'timed out';
  const cause =
    error instanceof Error ? (error.cause as { code?: string; message?: string } | undefined) : undefined;
  return cause?.code ?? cause?.message ?? (error instanceof Error ? error.message : String(error));
}

/** A thin client of the REST API: every failure becomes a CliError with the right exit code. */
export class ApiClient {
  readonly baseUrl: string;

  constructor(
    baseUrl: string,
    private readonly key: () => string,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    return this.request<T>('POST', path, body, headers);
  }

  /** Whether the API answers its readiness probe (no key needed). */
  async ready(timeoutMs = 2_000): Promise<boolean> {
    return (await this.probe(timeoutMs)) === 'ready';
  }

  /** The readiness probe: 200 is ready, any other answer is not ready, no answer is down. */
  async probe(timeoutMs = 2_000): Promise<'ready' | 'not ready' | 'down'> {
    try {
      const response = await fetch(`${this.baseUrl}/health/ready`, {
        signal: AbortSignal.timeout(timeoutMs),
      });
      await response.arrayBuffer();
      return response.status === 200 ? 'ready' : 'not ready';
    } catch {
      return 'down';
    }
  }

  async request<T>(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<T> {
    const key = this.key();
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${this.baseUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${key}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      text = await response.text();
    } catch (error) {
      throw new CliError(
        EXIT.unreachable,
        `cannot reach the API at ${this.baseUrl} (${networkReason(error)}); is the system up? (edm up)`,
      );
    }
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (response.ok) {
      if (json === undefined)
        throw new CliError(
          EXIT.failure,
          `${method} ${path}: the API answered ${response.status} without JSON`,
        );
      return json as T;
    }
    const error = (json as ErrorBody | undefined)?.error;
    const message = error?.message ?? (text.slice(0, 200) || response.statusText);
    const fields = error?.fields?.length
      ? ` (${error.fields.map((f) => `${f.field}: ${f.message}`).join('; ')})`
      : '';
    if (response.status === 401 || response.status === 403)
      throw new CliError(EXIT.auth, `authentication refused by ${this.baseUrl}: ${message}`);
    if (response.status === 404) throw new CliError(EXIT.notFound, message);
    throw new CliError(
      EXIT.failure,
      `${method} ${path} failed: ${response.status} ${error?.code ?? ''} ${message}${fields}`.replace(
        /\s+/g,
        ' ',
      ),
    );
  }
}

export function formatPace(pace: Pace | null | undefined): string {
  if (!pace) return '-';
  if ('intervalMs' in pace)
    return pace.intervalMs >= 1_000
      ? `1 per ${(pace.intervalMs / 1_000).toFixed(1)} s`
      : `1 per ${pace.intervalMs} ms`;
  return `${pace.perSecond}/s${pace.burst ? ` (burst ${pace.burst})` : ''}`;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Task ids are UUIDs; anything else cannot exist, and the API would say 404 anyway. */
export function taskPath(id: string, suffix = ''): string {
  if (!UUID.test(id)) throw new CliError(EXIT.notFound, `task not found: "${id}" is not a task id`);
  return `/api/v1/tasks/${id}${suffix}`;
}
