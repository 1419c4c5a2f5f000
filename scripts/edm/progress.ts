import { ApiClient, Counts, List, SubTask, TaskView, taskPath } from './api';
import { formatDuration, LiveArea, progressBar, Style } from './ui';

/** One thing that happened to a sub-task, seen by polling: a send, or a webhook that came back. */
export interface FeedEvent {
  at: string;
  kind: string;
  email: string;
  serviceId: string | null;
}

const WEBHOOK_STATUSES = ['bounced', 'complained', 'unsubscribed'];
const FAILURE_STATUSES = ['failed', 'unknown'];
/** Above this many sub-tasks the feed is skipped: one page of sub-tasks per poll is the budget. */
export const FEED_LIMIT = 1_000;

/**
 * Diffs the task's sub-tasks between polls: a new `sentAt` is a send, new `deliveredAt` / `openedAt` /
 * `clickedAt` or a bounce/complaint status is a webhook event flowing back.
 */
export class SubTaskFeed {
  private readonly seen = new Set<string>();
  items: SubTask[] = [];

  constructor(
    private readonly client: ApiClient,
    private readonly taskId: string,
  ) {}

  async poll(): Promise<FeedEvent[]> {
    const page = await this.client.get<List<SubTask>>(taskPath(this.taskId, `/subtasks?limit=${FEED_LIMIT}`));
    this.items = page.items;
    const fresh: FeedEvent[] = [];
    for (const s of page.items) {
      const steps: [string, string | null][] = [
        ['sent', s.sentAt],
        ['delivered', s.deliveredAt],
        ['opened', s.openedAt],
        ['clicked', s.clickedAt],
      ];
      if ([...WEBHOOK_STATUSES, ...FAILURE_STATUSES].includes(s.status)) steps.push([s.status, s.updatedAt]);
      for (const [kind, at] of steps) {
        const key = `${s.id}:${kind}`;
        if (!at || this.seen.has(key)) continue;
        this.seen.add(key);
        fresh.push({ at, kind, email: s.email, serviceId: s.serviceId });
      }
    }
    return fresh.sort((a, b) => a.at.localeCompare(b.at));
  }

  /** First and last send per service, from the last poll. */
  sendWindow(serviceId: string): { first: number; last: number } | undefined {
    const times = this.items
      .filter((s) => s.serviceId === serviceId && s.sentAt)
      .map((s) => new Date(s.sentAt as string).getTime());
    return times.length ? { first: Math.min(...times), last: Math.max(...times) } : undefined;
  }
}

export function formatFeedEvent(
  event: FeedEvent,
  since: string,
  serviceName: (id: string | null) => string,
  s: Style,
): string {
  const offset =
    `+${((new Date(event.at).getTime() - new Date(since).getTime()) / 1_000).toFixed(2)} s`.padStart(10);
  const isWebhook = event.kind !== 'sent' && !FAILURE_STATUSES.includes(event.kind);
  const arrow = isWebhook ? s.cyan('←') : FAILURE_STATUSES.includes(event.kind) ? s.red('✗') : s.green('→');
  const kind = event.kind.padEnd(12);
  const coloured = isWebhook
    ? s.cyan(kind)
    : FAILURE_STATUSES.includes(event.kind)
      ? s.red(kind)
      : s.green(kind);
  const via = isWebhook ? 'webhook from' : 'via';
  return `${s.dim(offset)}  ${arrow} ${coloured} ${event.email.padEnd(34)} ${s.dim(`${via} ${serviceName(event.serviceId)}`)}`;
}

export interface KnownService {
  id: string;
  name: string;
}

const ZERO: Counts = {
  total: 0,
  pending: 0,
  allocated: 0,
  sending: 0,
  sent: 0,
  delivered: 0,
  opened: 0,
  clicked: 0,
  bounced: 0,
  complained: 0,
  unsubscribed: 0,
  failed: 0,
  unknown: 0,
  skipped: 0,
  cancelled: 0,
};

/** The services to draw: those given up front, then any the task used besides. */
export function serviceRows(
  task: TaskView,
  known: readonly KnownService[],
): { id: string; name: string; counts: Counts }[] {
  const rows = known.map((k) => ({
    id: k.id,
    name: k.name,
    counts: task.services.find((x) => x.serviceId === k.id)?.counts ?? ZERO,
  }));
  for (const x of task.services)
    if (!rows.some((r) => r.id === x.serviceId))
      rows.push({ id: x.serviceId, name: x.name, counts: x.counts });
  return rows;
}

const tail = (c: Counts, s: Style) =>
  `${s.bold(String(c.sent).padStart(4))} sent ${String(c.delivered).padStart(4)} delivered ${String(c.opened).padStart(4)} opened ${String(c.clicked).padStart(4)} clicked${c.failed + c.unknown ? s.red(`  ${c.failed + c.unknown} failed`) : ''}`;

/** Per-service bars (sent out of the task's total, so they add up to the overall bar) and the overall one. */
export function progressLines(
  task: TaskView,
  known: readonly KnownService[],
  elapsedMs: number,
  s: Style,
  phase?: string,
): string[] {
  const rows = serviceRows(task, known);
  const total = task.counts.total;
  const width = Math.max(10, ...rows.map((r) => r.name.length), 3);
  const barWidth = 28;
  const colours = [s.cyan, s.magenta, s.yellow, s.blue, s.green];
  const status =
    task.status === 'completed'
      ? s.green(task.status)
      : task.status === 'cancelled'
        ? s.red(task.status)
        : s.yellow(task.status);
  return [
    `${s.bold(task.name)}  ${status}  ${s.dim(formatDuration(elapsedMs))}${phase ? `  ${s.dim(phase)}` : ''}`,
    ...rows.map(
      (r, i) =>
        `  ${r.name.padEnd(width)}  ${colours[i % colours.length](progressBar(r.counts.sent, total, barWidth, true))}  ${tail(r.counts, s)}`,
    ),
    `  ${'all'.padEnd(width)}  ${s.bold(progressBar(task.counts.sent, total, barWidth, true))}  ${tail(task.counts, s)}  ${s.dim(`of ${total}`)}`,
  ];
}

/** One line for logs and pipes. */
export function progressLine(task: TaskView, known: readonly KnownService[]): string {
  const c = task.counts;
  const split = serviceRows(task, known)
    .map((r) => `${r.name}: ${r.counts.sent}`)
    .join(', ');
  return `[${progressBar(c.sent, c.total, 20, false)}] ${c.sent}/${c.total} sent, ${c.delivered} delivered, ${c.opened} opened, ${c.clicked} clicked${c.failed + c.unknown ? `, ${c.failed + c.unknown} failed` : ''} — ${task.status}${split ? `; sent by ${split}` : ''}`;
}

/** The part of a task's state that, when it changes, is worth a new line off a terminal. */
const progressKey = (task: TaskView) => JSON.stringify([task.status, task.counts]);

export interface FollowOptions {
  client: ApiClient;
  taskId: string;
  intervalMs: number;
  /** Epoch ms after which following stops with `timedOut`. */
  deadline?: number;
  live?: LiveArea;
  feed?: SubTaskFeed;
  known: readonly KnownService[];
  style: Style;
  /** Shown after the elapsed time. */
  phase?: (task: TaskView) => string | undefined;
  /** Stop when this says so; `quietMs` is how long the counts have not changed. */
  until: (task: TaskView, quietMs: number) => boolean;
}

/** Polls a task (and its feed) and draws progress until `until` holds or the deadline passes. */
export async function followTask(options: FollowOptions): Promise<{ task: TaskView; timedOut: boolean }> {
  const { client, taskId, live, feed, known, style } = options;
  let lastKey = '';
  let changedAt = Date.now();
  for (;;) {
    const task = await client.get<TaskView>(taskPath(taskId));
    const events = feed && task.counts.total <= FEED_LIMIT ? await feed.poll() : [];
    const key = progressKey(task);
    if (key !== lastKey) {
      lastKey = key;
      changedAt = Date.now();
    }
    if (live) {
      const names = new Map(serviceRows(task, known).map((r) => [r.id, r.name]));
      for (const event of events)
        live.log(formatFeedEvent(event, task.createdAt, (id) => (id ? (names.get(id) ?? id) : '?'), style));
      const elapsed =
        (task.completedAt ? new Date(task.completedAt).getTime() : Date.now()) -
        new Date(task.createdAt).getTime();
      live.update(
        progressLines(task, known, elapsed, style, options.phase?.(task)),
        progressLine(task, known),
      );
    }
    const quietMs = Date.now() - changedAt;
    if (options.until(task, quietMs)) return { task, timedOut: false };
    if (options.deadline !== undefined && Date.now() >= options.deadline) return { task, timedOut: true };
    await new Promise((r) => setTimeout(r, options.intervalMs));
  }
}
