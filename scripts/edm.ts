import { describeOptions, ParsedArgs, parseArgs, splitCommand } from './edm/args';
import { Command } from './edm/command';
import { Context, GLOBAL_OPTIONS } from './edm/context';
import { demoCommand } from './edm/demo';
import { CliError, EXIT, ExitCode, oneLine, usageError } from './edm/errors';
import { alertsCommand, diagnoseCommand, repairCommand, servicesCommand, tasksCommand } from './edm/inspect';
import { replayCommand } from './edm/replay';
import { upCommand } from './edm/system';
import { watchCommand } from './edm/watch';

/** `edm`: the operator's command line. Compiled to dist/scripts/edm.js; bin/edm.js runs it. */
const COMMANDS: readonly Command[] = [
  upCommand,
  demoCommand,
  tasksCommand,
  watchCommand,
  diagnoseCommand,
  repairCommand,
  servicesCommand,
  alertsCommand,
  replayCommand,
];

const EXIT_CODES = `Exit codes:
  0  ok
  1  operational failure (task failed or cancelled, verification mismatch, timeout)
  2  usage error (bad command line or configuration)
  3  cannot reach the API (replay: Postgres)
  4  authentication refused, or no API key found
  5  not found (no such task)`;

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => `${c.name} ${c.usage}`.length));
  return `Usage: edm <command> [options]

Operate the EDM dispatch platform: bring it up, watch tasks, diagnose and repair them, rebuild read models.

Commands:
${COMMANDS.map((c) => `  ${`${c.name} ${c.usage}`.padEnd(width)}  ${c.summary}`).join('\n')}

Options for every command:
${describeOptions(GLOBAL_OPTIONS)}

The API key comes from --key, --key-file, EDM_ADMIN_KEY, or $EDM_HOME/admin-key (written at first start).
Run edm <command> --help for a command's options.

${EXIT_CODES}
`;
}

function commandHelp(command: Command): string {
  const own = command.options.length ? `Options:\n${describeOptions(command.options)}\n\n` : '';
  return `Usage: edm ${command.name}${command.usage ? ` ${command.usage}` : ''} [options]

${command.description}

${own}Options for every command:
${describeOptions(GLOBAL_OPTIONS)}
${command.exits ? `\nExit codes: ${command.exits}.\n(For every command: 2 usage error, 3 cannot reach the API, 4 authentication refused.)\n` : ''}`;
}

const findCommand = (name: string) => COMMANDS.find((c) => c.name === name);

async function run(argv: readonly string[]): Promise<ExitCode> {
  const { command: name, rest } = splitCommand(argv, GLOBAL_OPTIONS);
  if (name === undefined) {
    const parsed = parseArgs(rest, GLOBAL_OPTIONS);
    if (parsed.flags.has('help')) {
      process.stdout.write(usage());
      return EXIT.ok;
    }
    process.stderr.write(usage());
    return EXIT.usage;
  }
  if (name === 'help') {
    const topic = rest.find((a) => !a.startsWith('-'));
    const command = topic === undefined ? undefined : findCommand(topic);
    if (topic !== undefined && !command)
      throw usageError(`unknown command "${topic}"`, 'run edm --help for the list');
    process.stdout.write(command ? commandHelp(command) : usage());
    return EXIT.ok;
  }
  const command = findCommand(name);
  if (!command) {
    process.stderr.write(`edm: unknown command "${name}"\n\n${usage()}`);
    return EXIT.usage;
  }
  const hint = `run edm ${command.name} --help for usage`;
  let parsed: ParsedArgs;
  try {
    parsed = parseArgs(rest, [...GLOBAL_OPTIONS, ...command.options]);
  } catch (error) {
    if (error instanceof CliError) throw new CliError(error.exitCode, error.message, hint);
    throw error;
  }
  if (parsed.flags.has('help')) {
    process.stdout.write(commandHelp(command));
    return EXIT.ok;
  }
  if (parsed.positionals.length < command.positionals)
    throw usageError(`edm ${command.name} needs ${command.usage}`, hint);
  if (parsed.positionals.length > command.positionals)
    throw usageError(`unexpected argument "${parsed.positionals[command.positionals]}"`, hint);
  return command.run(new Context(parsed), parsed.positionals);
}

/** Waits until everything written to stdout and stderr is flushed, then exits. */
function exit(code: number): void {
  let pending = 2;
  const done = () => {
    pending -= 1;
    if (pending === 0) process.exit(code);
  };
  process.stdout.write('', done);
  process.stderr.write('', done);
}

run(process.argv.slice(2)).then(exit, (error: unknown) => {
  if (error instanceof CliError) {
    process.stderr.write(`edm: ${oneLine(error)}${error.hint ? ` (${error.hint})` : ''}\n`);
    exit(error.exitCode);
    return;
  }
  process.stderr.write(`edm: ${oneLine(error)}\n`);
  exit(EXIT.failure);
});
