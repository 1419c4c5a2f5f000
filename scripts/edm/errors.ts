/** Exit codes of `edm`: every command uses these and only these. */
export const EXIT = {
  ok: 0,
  /** The command ran but the outcome is a failure: task failed or cancelled, verification mismatch, timeout. */
  failure: 1,
  /** Bad command line or bad configuration. */
  usage: 2,
  /** Cannot reach the API (or, for replay, Postgres). */
  unreachable: 3,
  /** The API refused the key, or no key was found. */
  auth: 4,
  /** The task (or other resource) does not exist. */
  notFound: 5,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error that ends the command with one line on stderr and a meaningful exit code. */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    /** Printed after the message (for usage errors: where to find help). */
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export const usageError = (message: string, hint?: string) => new CliError(EXIT.usage, message, hint);

/** The message of anything thrown, on one line. */
export const oneLine = (error: unknown): string =>
  (error instanceof Error ? error.message : String(error)).replace(/\s*\n\s*/g, ' ').trim();
