import { Alert, Diagnosis, List, Service, TaskView, taskPath } from './api';
import { Command } from './command';
import { Context } from './context';
import { CliError, EXIT, ExitCode } from './errors';
import { followTask, KnownService, serviceRows, SubTaskFeed } from './progress';
import { startSystem, StartedSystem } from './system';
import { formatDuration, LiveArea, renderTable } from './ui';

/** The incident's two accounts: one mail every 31 s and every 18 s, scaled down tenfold by default. */
const PACES = [
  { label: 'A', intervalMs: 3_100 },
  { label: 'B', intervalMs: 1_800 },
] as const;
const SANDBOX_OPTIONS = {
  latencyMs: 50,
  callbacks: { delivered: 1, open: 0.6, click: 0.2 },
  callbackDelayMs: 300,
};
/** After the task completes: how long the counts must stay still before the webhooks count as settled. */
const SETTLE_QUIET_MS = 1_500;
const SETTLE_TIMEOUT_MS = 20_000;

interface ServiceSummary {
  id: string;
  name: string;
  intervalMs: number;
  sent: number;
  delivered: number;
  opened: number;
  clicked: number;
  failed: number;
  firstSentAt: string | null;
  lastSentAt: string | null;
  sendingMs: number | null;
}

export interface DemoSummary {
  ok: boolean;
  message: string;
  taskId: string;
  status: string;
  paceScale: number;
  total: number;
  sent: number;
  delivered: number;
  opened: number;
  clicked: number;
  failed: number;
  durationMs: number | null;
  services: ServiceSummary[];
  webhookEvents: Record<string, number>;
  alerts: Alert[];
  systemStartedByDemo: boolean;
}

export const demoCommand: Command = {
  name: 'demo',
  usage: '',
  positionals: 0,
  summary: "replay the post-mortem's incident, now passing",
  description: [
    "The incident of the post-mortem, now passing: two sandbox services at different paces (one mail every 3.1 s and every 1.8 s: the incident's 31 s and 18 s, scaled), twenty contacts and one task over both services.",
    'Shows a progress bar per service and the webhook events flowing back (the sandbox calls webhook-ingest), then a summary: sent, delivered, opened and clicked per service, duration, alerts.',
    'When the API does not answer and no --api was given, the system is started first (logs in $EDM_HOME/logs/system.log) and stopped at the end unless --keep-up.',
  ].join('\n\n'),
  exits: '0 every mail sent and every delivery reported back; 1 otherwise (or timeout); 3 API unreachable',
  options: [
    {
      name: 'pace-scale',
      kind: 'value',
      placeholder: '<factor>',
      description: 'multiply both paces (0.05: 155 ms and 90 ms; default 1)',
    },
    {
      name: 'contacts',
      kind: 'value',
      placeholder: '<n>',
      description: 'how many contacts and sub-tasks (default 20)',
    },
    {
      name: 'timeout',
      kind: 'value',
      placeholder: '<seconds>',
      description: 'give up after this long (default: 4 times the expected duration + 60 s)',
    },
    {
      name: 'keep-up',
      kind: 'flag',
      description: 'if the demo started the system, keep it running afterwards',
    },
  ],
  async run(ctx: Context): Promise<ExitCode> {
    const scale = ctx.number('pace-scale', 1, { min: 0.001, max: 100 });
    const count = ctx.number('contacts', 20, { min: 1, max: 10_000, integer: true });
    const timeoutS = ctx.number('timeout', 0, { min: 0 });
    const client = ctx.client();
    const s = ctx.style;
    const say = (line: string) => {
      if (!ctx.json) ctx.print(`${s.bold('[edm]')} ${line}`);
    };

    let system: StartedSystem | undefined;
    const state = await client.probe();
    if (state === 'not ready') say(`the API at ${client.baseUrl} answers but is not ready yet; going on`);
    if (state === 'down') {
      if (ctx.apiGiven)
        throw new CliError(
          EXIT.unreachable,
          `cannot reach the API at ${client.baseUrl}; is the system up? (edm up)`,
        );
      say(`no API at ${client.baseUrl}: starting the system (logs: ${ctx.config().home}/logs/system.log)`);
      let shown = 0;
      system = await startSystem(ctx, (ms) => {
        if (ms - shown >= 5_000) {
          shown = ms;
          say(`waiting for the services… ${formatDuration(ms)}`);
        }
      });
      say('the system is up');
    }

    try {
      const summary = await runDemo(ctx, scale, count, timeoutS, say);
      summary.systemStartedByDemo = system !== undefined;
      if (ctx.json) ctx.printJson(summary);
      else printSummary(ctx, summary);
      if (system && ctx.flag('keep-up')) {
        say(`the system keeps running (logs: ${system.logFile}); Ctrl-C stops it`);
        process.on('SIGINT', () => undefined);
        await new Promise((ok) => system?.child.once('exit', ok));
        system = undefined;
      }
      return summary.ok ? EXIT.ok : EXIT.failure;
    } finally {
      if (system) {
        say('stopping the system the demo started');
        await system.stop();
      }
    }
  },
};

async function runDemo(
  ctx: Context,
  scale: number,
  count: number,
  timeoutS: number,
  say: (line: string) => void,
): Promise<DemoSummary> {
  const client = ctx.client();
  const s = ctx.style;
  const run = Date.now().toString(36);
  const tag = `demo-${run}`;

  const services: (KnownService & { intervalMs: number })[] = [];
  for (const pace of PACES) {
    const intervalMs = Math.max(0, Math.round(pace.intervalMs * scale));
    const created = await client.post<Service>('/api/v1/services', {
      name: `demo ${pace.label} ${run} (1 per ${formatDuration(intervalMs)})`,
      provider: 'sandbox',
      from: { email: 'demo@example.com', name: 'EDM demo' },
      pace: { intervalMs },
      options: SANDBOX_OPTIONS,
    });
    services.push({ id: created.id, name: `demo ${pace.label} (${formatDuration(intervalMs)})`, intervalMs });
  }
  say(`created sandbox services ${services.map((x) => s.bold(x.name)).join(' and ')}`);
  await client.post('/api/v1/contacts', {
    contacts: Array.from({ length: count }, (_, i) => ({
      email: `${tag}-${i + 1}@example.com`,
      name: `Demo ${i + 1}`,
      tags: [tag],
    })),
  });
  say(`created ${count} contacts tagged ${tag}`);
  const task = await client.post<TaskView>(
    '/api/v1/tasks',
    {
      name: `demo ${run}: the incident, now passing`,
      subject: 'Hello {{name}}',
      html: '<p>Hi {{name}}, this is the EDM demo. <a href="https://example.com/">A link to click</a>.</p>',
      text: 'Hi {{name}}, this is the EDM demo.',
      recipients: { tags: [tag] },
      serviceIds: services.map((x) => x.id),
    },
    { 'idempotency-key': tag },
  );
  say(`created task ${s.bold(task.id)} with ${count} sub-tasks; watching it (also: edm watch ${task.id})`);

  // Both services together send about 1/a + 1/b mails a second.
  const rate = services.reduce((r, x) => r + 1_000 / Math.max(x.intervalMs, 1), 0);
  const expectedMs = (count / rate) * 1_000;
  const timeoutMs = timeoutS * 1_000 || expectedMs * 4 + 60_000;
  const deadline = Date.now() + timeoutMs;
  const live = ctx.json ? undefined : new LiveArea(ctx.stdout, ctx.tty);
  const feed = new SubTaskFeed(client, task.id);
  const intervalMs = Math.min(500, Math.max(100, Math.min(...services.map((x) => x.intervalMs)) / 2));
  const common = { client, taskId: task.id, intervalMs, live, feed, known: services, style: s, deadline };

  const sending = await followTask({
    ...common,
    until: (t) => t.status === 'completed' || t.status === 'cancelled',
  });
  let final = sending.task;
  if (!sending.timedOut && final.status === 'completed') {
    const settleBy = Math.min(deadline, Date.now() + SETTLE_TIMEOUT_MS);
    final = (
      await followTask({
        ...common,
        deadline: settleBy,
        phase: (t) =>
          t.counts.delivered < t.counts.sent ? 'waiting for delivery webhooks' : 'letting webhooks settle',
        until: (t, quietMs) => t.counts.delivered >= t.counts.sent && quietMs >= SETTLE_QUIET_MS,
      })
    ).task;
  }
  live?.done();

  const [diagnosis, alerts] = await Promise.all([
    client.get<Diagnosis>(taskPath(task.id, '/diagnosis')),
    client.get<List<Alert>>('/api/v1/alerts?status=firing'),
  ]);
  const subjects = new Set([`task:${task.id}`, ...services.map((x) => `service:${x.id}`)]);
  const webhookEvents: Record<string, number> = {};
  for (const w of diagnosis.webhooks.byType) webhookEvents[w.type] = (webhookEvents[w.type] ?? 0) + w.count;

  const c = final.counts;
  const durationMs = final.completedAt
    ? new Date(final.completedAt).getTime() - new Date(final.createdAt).getTime()
    : null;
  const problems: string[] = [];
  if (sending.timedOut)
    problems.push(`timed out after ${formatDuration(timeoutMs)} with the task ${final.status}`);
  else if (final.status !== 'completed') problems.push(`the task was ${final.status}`);
  if (c.sent < c.total) problems.push(`${c.total - c.sent} of ${c.total} not sent`);
  if (c.delivered < c.sent) problems.push(`${c.sent - c.delivered} sent mails with no delivery webhook`);
  const ok = problems.length === 0;
  const used = serviceRows(final, services).filter((r) => r.counts.sent > 0).length;
  const message = ok
    ? `the incident, now passing: ${c.sent}/${c.total} sent over ${used} services, every delivery reported back`
    : `${problems.join('; ')}: ${diagnosis.verdict} (edm diagnose ${task.id})`;

  return {
    ok,
    message,
    taskId: task.id,
    status: final.status,
    paceScale: scale,
    total: c.total,
    sent: c.sent,
    delivered: c.delivered,
    opened: c.opened,
    clicked: c.clicked,
    failed: c.failed + c.unknown,
    durationMs,
    services: serviceRows(final, services).map((r) => {
      const window = feed.sendWindow(r.id);
      return {
        id: r.id,
        name: r.name,
        intervalMs: services.find((x) => x.id === r.id)?.intervalMs ?? 0,
        sent: r.counts.sent,
        delivered: r.counts.delivered,
        opened: r.counts.opened,
        clicked: r.counts.clicked,
        failed: r.counts.failed + r.counts.unknown,
        firstSentAt: window ? new Date(window.first).toISOString() : null,
        lastSentAt: window ? new Date(window.last).toISOString() : null,
        sendingMs: window ? window.last - window.first : null,
      };
    }),
    webhookEvents,
    alerts: alerts.items.filter((a) => subjects.has(a.subject)),
    systemStartedByDemo: false,
  };
}

function printSummary(ctx: Context, summary: DemoSummary): void {
  const s = ctx.style;
  type Row = Pick<ServiceSummary, 'name' | 'sent' | 'delivered' | 'opened' | 'clicked' | 'failed'> & {
    pace: string;
    duration: string;
  };
  const rows: Row[] = summary.services.map((x) => ({
    ...x,
    pace: `1 per ${formatDuration(x.intervalMs)}`,
    duration: x.sendingMs === null ? '-' : formatDuration(x.sendingMs),
  }));
  const total: Row = {
    name: 'total',
    pace: '',
    sent: summary.sent,
    delivered: summary.delivered,
    opened: summary.opened,
    clicked: summary.clicked,
    failed: summary.failed,
    duration: summary.durationMs === null ? '-' : formatDuration(summary.durationMs),
  };
  const n = (k: 'sent' | 'delivered' | 'opened' | 'clicked' | 'failed') => (r: Row) => r[k];
  ctx.print('');
  ctx.print(
    renderTable(
      rows,
      [
        { header: 'service', value: (r) => r.name },
        { header: 'pace', value: (r) => r.pace },
        { header: 'sent', value: n('sent'), align: 'right' },
        { header: 'delivered', value: n('delivered'), align: 'right' },
        { header: 'opened', value: n('opened'), align: 'right' },
        { header: 'clicked', value: n('clicked'), align: 'right' },
        {
          header: 'failed',
          value: n('failed'),
          align: 'right',
          colour: (text, r) => (r.failed ? s.red(text) : text),
        },
        { header: 'duration', value: (r) => r.duration, align: 'right' },
      ],
      s,
      total,
    ),
  );
  const events = Object.entries(summary.webhookEvents);
  ctx.print(
    `${s.bold('Webhook events stored and matched:')} ${events.length ? events.map(([t, k]) => `${t} ${k}`).join(' · ') : 'none'}`,
  );
  ctx.print(
    `${s.bold('Alerts:')} ${summary.alerts.length ? s.red(summary.alerts.map((a) => `${a.severity} ${a.kind}: ${a.message}`).join('; ')) : s.green('none firing')}`,
  );
  ctx.print(`${s.bold('Task:')} ${summary.taskId} (edm diagnose ${summary.taskId})`);
  ctx.print(summary.ok ? s.green(s.bold(`✓ ${summary.message}`)) : s.red(s.bold(`✗ ${summary.message}`)));
}
