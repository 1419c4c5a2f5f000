import { usageError } from './errors';

export interface OptionSpec {
  /** Long name without the dashes. */
  name: string;
  short?: string;
  kind: 'flag' | 'value';
  /** Shown in help after the option: `--timeout <seconds>`. */
  placeholder?: string;
  choices?: readonly string[];
  description: string;
}

export interface ParsedArgs {
  positionals: string[];
  values: Map<string, string>;
  flags: Set<string>;
}

/** Splits off the command: the first token that is neither an option nor the value of a global option. */
export function splitCommand(
  argv: readonly string[],
  globals: readonly OptionSpec[],
): { command: string | undefined; rest: string[] } {
  for (let i = 0; i < argv.length; i += 1) {
    const token = argv[i];
    if (token === '--') return { command: argv[i + 1], rest: [...argv.slice(0, i), ...argv.slice(i + 2)] };
    if (token.startsWith('-') && token !== '-') {
      const spec = findSpec(token, globals);
      if (spec?.kind === 'value' && !token.includes('=')) i += 1;
      continue;
    }
    return { command: token, rest: [...argv.slice(0, i), ...argv.slice(i + 1)] };
  }
  return { command: undefined, rest: [...argv] };
}

function findSpec(token: string, specs: readonly OptionSpec[]): OptionSpec | undefined {
  if (token.startsWith('--')) {
    const name = token.slice(2).split('=')[0];
    return specs.find((s) => s.name === name);
  }
  return specs.find((s) => s.short !== undefined && s.short === token.slice(1));
}

/** Hand-rolled GNU-style parsing: `--name value`, `--name=value`, `-h`, `--` ends options. */
export function parseArgs(argv: readonly string[], specs: readonly OptionSpec[]): ParsedArgs {
  const parsed: ParsedArgs = { positionals: [], values: new Map(), flags: new Set() };
  for (let i = 0; i < argv.length; i += 1) {
    const token = argv[i];
    if (token === '--') {
      parsed.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!token.startsWith('-') || token === '-' || /^-\d/.test(token)) {
      parsed.positionals.push(token);
      continue;
    }
    const spec = findSpec(token, specs);
    if (!spec) throw usageError(`unknown option ${token.split('=')[0]}`);
    const inline =
      token.startsWith('--') && token.includes('=') ? token.slice(token.indexOf('=') + 1) : undefined;
    if (spec.kind === 'flag') {
      if (inline !== undefined) throw usageError(`--${spec.name} takes no value`);
      parsed.flags.add(spec.name);
      continue;
    }
    const value = inline ?? argv[i + 1];
    if (inline === undefined) i += 1;
    if (value === undefined || (inline === undefined && value.startsWith('--')))
      throw usageError(`--${spec.name} needs a value${spec.placeholder ? ` ${spec.placeholder}` : ''}`);
    if (spec.choices && !spec.choices.includes(value))
      throw usageError(`--${spec.name} must be one of ${spec.choices.join(', ')} (got "${value}")`);
    parsed.values.set(spec.name, value);
  }
  return parsed;
}

/** The option lines of a help text. */
export function describeOptions(specs: readonly OptionSpec[]): string {
  const heads = specs.map(
    (s) =>
      `${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.kind === 'value' ? ` ${s.placeholder ?? '<value>'}` : ''}`,
  );
  const width = Math.max(...heads.map((h) => h.length));
  return specs
    .map((s, i) => {
      const choices = s.choices ? ` (${s.choices.join(' | ')})` : '';
      return `  ${heads[i].padEnd(width)}  ${s.description}${choices}`;
    })
    .join('\n');
}
