import { subTaskStatuses } from '@edm/events';
import {
  Alert,
  Counts,
  Diagnosis,
  formatPace,
  List,
  RepairReport,
  Service,
  TaskSummary,
  taskPath,
} from './api';
import { Command } from './command';
import { Context } from './context';
import { EXIT, ExitCode } from './errors';
import { formatAge, formatTime, renderTable, Style } from './ui';

const statusColour = (style: Style, status: string) => (text: string) =>
  ['completed', 'active', 'resolved', 'sent', 'delivered', 'opened', 'clicked'].includes(status)
    ? style.green(text)
    : ['cancelled', 'frozen', 'failed', 'firing', 'disabled', 'bounced', 'complained', 'unknown'].includes(
          status,
        )
      ? style.red(text)
      : ['paused', 'scheduled', 'pending'].includes(status)
        ? style.yellow(text)
        : style.cyan(text);

const severityColour = (style: Style, severity: string) => (text: string) =>
  severity === 'critical' ? style.red(style.bold(text)) : severity === 'warning' ? style.yellow(text) : text;

export const tasksCommand: Command = {
  name: 'tasks',
  usage: '',
  positionals: 0,
  summary: 'list tasks, newest first',
  description: 'Lists the tasks of the account the key belongs to, newest first.',
  options: [
    {
      name: 'status',
      kind: 'value',
      placeholder: '<status>',
      choices: ['scheduled', 'sending', 'paused', 'completed', 'cancelled'],
      description: 'only tasks in this status',
    },
    {
      name: 'limit',
      kind: 'value',
      placeholder: '<n>',
      description: 'at most this many (1-500, default 50)',
    },
  ],
  async run(ctx: Context): Promise<ExitCode> {
    const limit = ctx.number('limit', 50, { min: 1, max: 500, integer: true });
    const status = ctx.value('status');
    const query = new URLSearchParams({ limit: String(limit), ...(status ? { status } : {}) });
    const list = await ctx.client().get<List<TaskSummary>>(`/api/v1/tasks?${query}`);
    if (ctx.json) {
      ctx.printJson(list);
      return EXIT.ok;
    }
    if (!list.items.length) {
      ctx.print(status ? `no ${status} tasks` : 'no tasks yet (try: edm demo)');
      return EXIT.ok;
    }
    const s = ctx.style;
    ctx.print(
      renderTable(
        list.items,
        [
          { header: 'id', value: (t) => t.id },
          { header: 'name', value: (t) => t.name, max: 40 },
          { header: 'status', value: (t) => t.status, colour: (text, t) => statusColour(s, t.status)(text) },
          { header: 'total', value: (t) => t.total, align: 'right' },
          { header: 'created', value: (t) => formatTime(t.createdAt) },
          { header: 'completed', value: (t) => formatTime(t.completedAt) },
        ],
        s,
      ),
    );
    if (list.nextCursor) ctx.print(s.dim(`(more: --limit ${Math.min(500, limit * 2)})`));
    return EXIT.ok;
  },
};

export const servicesCommand: Command = {
  name: 'services',
  usage: '',
  positionals: 0,
  summary: 'list sending services with status, pace and quota',
  description:
    'Lists the sending services of the account: status, pace, daily quota use, last send and error.',
  options: [],
  async run(ctx: Context): Promise<ExitCode> {
    const list = await ctx.client().get<List<Service>>('/api/v1/services');
    if (ctx.json) {
      ctx.printJson(list);
      return EXIT.ok;
    }
    if (!list.items.length) {
      ctx.print('no sending services yet (try: edm demo)');
      return EXIT.ok;
    }
    const s = ctx.style;
    ctx.print(
      renderTable(
        list.items,
        [
          { header: 'name', value: (x) => x.name, max: 32 },
          { header: 'provider', value: (x) => x.provider },
          {
            header: 'status',
            value: (x) => x.status,
            colour: (text, x) => statusColour(s, x.status)(text),
          },
          { header: 'pace', value: (x) => formatPace(x.pace) },
          {
            header: 'quota used/left',
            value: (x) => `${x.quotaUsed}/${x.quotaLeft ?? '∞'}`,
            align: 'right',
          },
          { header: 'failures', value: (x) => x.consecutiveFailures, align: 'right' },
          { header: 'last sent', value: (x) => formatAge(x.lastSentAt) },
          { header: 'last error', value: (x) => x.lastError ?? x.statusReason, max: 40 },
          { header: 'id', value: (x) => x.id },
        ],
        s,
      ),
    );
    return EXIT.ok;
  },
};

export const alertsCommand: Command = {
  name: 'alerts',
  usage: '',
  positionals: 0,
  summary: 'list firing alerts (or resolved, or all)',
  description:
    'Lists alerts raised by the monitor: stuck leases, webhook silence, failing or frozen services, stalled tasks, relay and consumer lag. Firing ones by default.',
  options: [
    {
      name: 'status',
      kind: 'value',
      placeholder: '<status>',
      choices: ['firing', 'resolved', 'all'],
      description: 'which alerts (default firing)',
    },
    {
      name: 'limit',
      kind: 'value',
      placeholder: '<n>',
      description: 'at most this many (1-500, default 100)',
    },
  ],
  async run(ctx: Context): Promise<ExitCode> {
    const status = ctx.value('status') ?? 'firing';
    const limit = ctx.number('limit', 100, { min: 1, max: 500, integer: true });
    const query = new URLSearchParams({ limit: String(limit), ...(status === 'all' ? {} : { status }) });
    const list = await ctx.client().get<List<Alert>>(`/api/v1/alerts?${query}`);
    if (ctx.json) {
      ctx.printJson(list);
      return EXIT.ok;
    }
    if (!list.items.length) {
      ctx.print(ctx.style.green(status === 'all' ? 'no alerts' : `no ${status} alerts`));
      return EXIT.ok;
    }
    ctx.print(alertTable(ctx.style, list.items, status !== 'firing'));
    return EXIT.ok;
  },
};

function alertTable(s: Style, alerts: readonly Alert[], withStatus: boolean): string {
  return renderTable(
    alerts,
    [
      {
        header: 'severity',
        value: (a) => a.severity,
        colour: (text, a) => severityColour(s, a.severity)(text),
      },
      ...(withStatus
        ? [
            {
              header: 'status',
              value: (a: Alert) => a.status,
              colour: (text: string, a: Alert) => statusColour(s, a.status)(text),
            },
          ]
        : []),
      { header: 'kind', value: (a) => a.kind },
      { header: 'subject', value: (a) => a.subject, max: 46 },
      { header: 'since', value: (a) => formatAge(a.firstSeenAt) },
      { header: 'message', value: (a) => a.message, max: 80 },
    ],
    s,
  );
}

/** Whether a diagnosis shows something an operator must act on. */
export function needsAttention(d: Diagnosis): boolean {
  const pending = d.counts.pending ?? 0;
  const noService = d.task.status === 'sending' && pending > 0 && !d.services.some((s) => s.usable);
  return d.stuckLeases.count > 0 || noService || d.alerts.length > 0;
}

const STATUS_ORDER = subTaskStatuses as readonly (keyof Counts)[];

function printDiagnosis(ctx: Context, d: Diagnosis): void {
  const s = ctx.style;
  const attention = needsAttention(d);
  ctx.print(
    `${s.bold('Task')} ${d.task.name} ${s.dim(d.task.id)} — ${statusColour(s, d.task.status)(d.task.status)}`,
  );
  ctx.print(`${s.bold('Verdict:')} ${attention ? s.red(d.verdict) : s.green(d.verdict)}`);
  for (const finding of d.findings.slice(1)) ctx.print(`  also: ${finding}`);
  const counts = STATUS_ORDER.filter((k) => (d.counts[k] ?? 0) > 0).map((k) => `${k} ${d.counts[k]}`);
  ctx.print(`${s.bold('Sub-tasks now:')} ${counts.length ? counts.join(' · ') : 'none'}`);
  ctx.print('');
  ctx.print(s.bold('Services'));
  ctx.print(
    d.services.length
      ? renderTable(
          d.services,
          [
            { header: 'name', value: (x) => x.name, max: 32 },
            { header: 'provider', value: (x) => x.provider },
            {
              header: 'status',
              value: (x) => x.status,
              colour: (text, x) => statusColour(s, x.status)(text),
            },
            {
              header: 'usable',
              value: (x) => (x.usable ? 'yes' : 'no'),
              colour: (text, x) => (x.usable ? s.green(text) : s.red(text)),
            },
            { header: 'pace', value: (x) => formatPace(x.pace) },
            {
              header: 'quota used/left',
              value: (x) => `${x.quotaUsed}/${x.quotaLeft ?? '∞'}`,
              align: 'right',
            },
            { header: 'failures', value: (x) => x.consecutiveFailures, align: 'right' },
            { header: 'last sent', value: (x) => formatAge(x.lastSentAt) },
            { header: 'last webhook', value: (x) => formatAge(x.lastWebhookAt) },
            { header: 'last error', value: (x) => x.lastError ?? x.statusReason, max: 40 },
          ],
          s,
        )
      : '  none: the task may use no existing service',
  );
  ctx.print('');
  ctx.print(s.bold('Webhook events received for this task'));
  ctx.print(
    d.webhooks.byType.length
      ? renderTable(
          d.webhooks.byType,
          [
            { header: 'type', value: (w) => w.type },
            { header: 'match', value: (w) => w.matchStatus },
            { header: 'strategy', value: (w) => w.strategy },
            { header: 'count', value: (w) => w.count, align: 'right' },
          ],
          s,
        )
      : '  none',
  );
  ctx.print(
    `  unmatched events for these services since the task was created: ${d.webhooks.unmatchedForTheseServices}`,
  );
  ctx.print('');
  ctx.print(
    `${s.bold('Stuck leases:')} ${d.stuckLeases.count ? s.red(`${d.stuckLeases.count} since ${formatTime(d.stuckLeases.since)} — edm repair ${d.task.id}`) : 'none'}`,
  );
  if (!d.alerts.length) ctx.print(`${s.bold('Firing alerts:')} none`);
  else {
    ctx.print(s.bold('Firing alerts'));
    ctx.print(
      renderTable(
        d.alerts,
        [
          {
            header: 'severity',
            value: (a) => a.severity,
            colour: (text, a) => severityColour(s, a.severity)(text),
          },
          { header: 'kind', value: (a) => a.kind },
          { header: 'since', value: (a) => formatAge(a.firstSeenAt) },
          { header: 'message', value: (a) => a.message, max: 80 },
        ],
        s,
      ),
    );
  }
}

export const diagnoseCommand: Command = {
  name: 'diagnose',
  usage: '<task>',
  positionals: 1,
  summary: "explain a task's state, with a verdict in words",
  description:
    'Everything about one task: its sub-tasks by status, the state and quota of every service it may use, the webhook events that came back, stuck leases, firing alerts, and a verdict in words.',
  exits:
    '0 nothing needs action; 1 stuck leases, pending work with no usable service, or firing alerts; 5 no such task',
  options: [],
  async run(ctx: Context, [task]: readonly string[]): Promise<ExitCode> {
    const diagnosis = await ctx.client().get<Diagnosis>(taskPath(task, '/diagnosis'));
    if (ctx.json) ctx.printJson(diagnosis);
    else printDiagnosis(ctx, diagnosis);
    return needsAttention(diagnosis) ? EXIT.failure : EXIT.ok;
  },
};

export const repairCommand: Command = {
  name: 'repair',
  usage: '<task>',
  positionals: 1,
  summary: 'release stuck leases, retry unmatched webhooks, wake the dispatcher',
  description:
    'Repairs one task, idempotently: releases stuck and expired leases, retries webhook events left unmatched for its services, completes it when nothing is left, and wakes the dispatcher when anything changed. Reports what it changed and the diagnosis afterwards.',
  exits:
    '0 repaired or nothing to repair; 1 sub-tasks out of step with their events (run edm replay); 5 no such task',
  options: [],
  async run(ctx: Context, [task]: readonly string[]): Promise<ExitCode> {
    const report = await ctx.client().post<RepairReport>(taskPath(task, '/repair'));
    const drift = report.subTasksOutOfStepWithEvents > 0;
    if (ctx.json) {
      ctx.printJson(report);
      return drift ? EXIT.failure : EXIT.ok;
    }
    const s = ctx.style;
    const yesNo = (v: boolean) => (v ? s.yellow('yes') : 'no');
    ctx.print(`${s.bold('Repair of task')} ${report.diagnosis.task.name} ${s.dim(task)}`);
    ctx.print(`  released leases            ${report.releasedLeases}`);
    ctx.print(`  retried webhook events     ${report.retriedWebhookEvents}`);
    ctx.print(`  completed the task         ${yesNo(report.completed)}`);
    ctx.print(`  woke the dispatcher        ${yesNo(report.dispatcherWoken)}`);
    ctx.print(
      `  sub-tasks out of step      ${drift ? s.red(`${report.subTasksOutOfStepWithEvents} (read models differ from the events: run edm replay)`) : '0'}`,
    );
    ctx.print(
      report.changed ? s.yellow('Changed the task (see above).') : s.green('Nothing needed repairing.'),
    );
    ctx.print(`${s.bold('Verdict now:')} ${report.diagnosis.verdict}`);
    return drift ? EXIT.failure : EXIT.ok;
  },
};
