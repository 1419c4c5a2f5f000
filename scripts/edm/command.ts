import { OptionSpec } from './args';
import { Context } from './context';
import { ExitCode } from './errors';

export interface Command {
  name: string;
  /** Positional arguments as shown in usage, e.g. `<task>`. */
  usage: string;
  /** How many positional arguments it requires (and accepts). */
  positionals: number;
  summary: string;
  /** Paragraphs shown by `edm <command> --help`. */
  description: string;
  options: readonly OptionSpec[];
  /** Exit codes this command may return, explained. */
  exits?: string;
  run(ctx: Context, positionals: readonly string[]): Promise<ExitCode>;
}
