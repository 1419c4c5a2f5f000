import { TaskView, taskPath } from './api';
import { Command } from './command';
import { Context } from './context';
import { EXIT, ExitCode } from './errors';
import { followTask, SubTaskFeed } from './progress';
import { formatDuration, LiveArea } from './ui';

export const watchCommand: Command = {
  name: 'watch',
  usage: '<task>',
  positionals: 1,
  summary: 'live progress of a task until it completes',
  description:
    'Follows one task: a progress bar per sending service and overall, and (for tasks of up to 1000 sub-tasks) every send and every webhook event as it comes back. Ends when the task completes or is cancelled. Off a terminal it prints one line per change; with --json only the final task.',
  exits: '0 the task completed; 1 it was cancelled, or --timeout passed first; 5 no such task',
  options: [
    {
      name: 'interval',
      kind: 'value',
      placeholder: '<ms>',
      description: 'poll interval (default 500)',
    },
    {
      name: 'timeout',
      kind: 'value',
      placeholder: '<seconds>',
      description: 'give up after this long (default: never)',
    },
    { name: 'no-events', kind: 'flag', description: 'progress bars only, no per-mail event lines' },
  ],
  async run(ctx: Context, [taskId]: readonly string[]): Promise<ExitCode> {
    const intervalMs = ctx.number('interval', 500, { min: 50, max: 60_000, integer: true });
    const timeoutS = ctx.number('timeout', 0, { min: 0 });
    const client = ctx.client();
    const first = await client.get<TaskView>(taskPath(taskId));
    const live = ctx.json ? undefined : new LiveArea(ctx.stdout, ctx.tty);
    const { task, timedOut } = await followTask({
      client,
      taskId,
      intervalMs,
      deadline: timeoutS > 0 ? Date.now() + timeoutS * 1_000 : undefined,
      live,
      feed: ctx.flag('no-events') || ctx.json ? undefined : new SubTaskFeed(client, taskId),
      known: first.services.map((x) => ({ id: x.serviceId, name: x.name })),
      style: ctx.style,
      until: (t) => t.status === 'completed' || t.status === 'cancelled',
    });
    live?.done();
    const code = task.status === 'completed' ? EXIT.ok : EXIT.failure;
    if (ctx.json) {
      ctx.printJson(task);
      return code;
    }
    const s = ctx.style;
    if (timedOut) {
      ctx.note(`edm watch: gave up after ${timeoutS} s; the task is ${task.status} (edm diagnose ${taskId})`);
      return EXIT.failure;
    }
    const took = task.completedAt
      ? ` in ${formatDuration(new Date(task.completedAt).getTime() - new Date(task.createdAt).getTime())}`
      : '';
    ctx.print(
      task.status === 'completed'
        ? s.green(`task ${task.id} completed${took}: ${task.counts.sent}/${task.counts.total} sent`)
        : s.red(`task ${task.id} was cancelled: ${task.counts.sent}/${task.counts.total} sent`),
    );
    return code;
  },
};
