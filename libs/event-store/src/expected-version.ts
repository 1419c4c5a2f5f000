import { PG_DEADLOCK, PG_SERIALIZATION_FAILURE, pgErrorCode } from '@edm/persistence';

/**
 * What the caller believes the stream's version is. `no_stream` = the stream must not exist yet,
 * a number = the stream's last version must be exactly that, `any` = append without a check.
 */
export type ExpectedVersion = number | 'no_stream' | 'any';

export class ConcurrencyError extends Error {
  readonly code = 'CONCURRENCY_CONFLICT';
  constructor(
    readonly streamId: string,
    readonly expected: ExpectedVersion,
  ) {
    super(`stream ${streamId} is not at expected version ${String(expected)}`);
    this.name = 'ConcurrencyError';
  }
}

/** An event too large for the bus to carry (EVENT_MAX_BYTES): refused before it is stored. */
export class EventTooLargeError extends Error {
  readonly code = 'EVENT_TOO_LARGE';
  constructor(
    readonly type: string,
    readonly bytes: number,
    readonly maxBytes: number,
  ) {
    super(`${type} would be ${bytes} bytes; an event holds at most ${maxBytes}`);
    this.name = 'EventTooLargeError';
  }
}

export const expectedAsNumber = (expected: ExpectedVersion): number | null =>
  expected === 'any' ? null : expected === 'no_stream' ? 0 : expected;

/**
 * A command that lost to a concurrent one and may simply run again: a stream moved on, or
 * Postgres rolled the transaction back to break a deadlock or a serialization conflict (two
 * commands locking the same rows in opposite orders, such as a cancel and a lease of that task).
 */
const isConflict = (error: unknown): boolean => {
  if (error instanceof ConcurrencyError) return true;
  const code = pgErrorCode(error);
  return code === PG_DEADLOCK || code === PG_SERIALIZATION_FAILURE;
};

/** Runs a command again when it lost a race (isConflict), with a little jitter; other errors pass. */
export async function retryOnConflict<T>(command: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await command();
    } catch (error) {
      if (!isConflict(error) || attempt >= attempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * attempt));
    }
  }
}
