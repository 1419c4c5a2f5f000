import { ConcurrencyError, retryOnConflict } from './expected-version';

/** A command that fails with each of `errors` in turn, then answers 'done'. */
const failing = (...errors: unknown[]) => {
  const command = jest.fn(async () => {
    const error = errors.shift();
    if (error !== undefined) throw error;
    return 'done';
  });
  return command;
};
const postgres = (code: string) => Object.assign(new Error(`sqlstate ${code}`), { code });

describe('retryOnConflict', () => {
  it('runs a command again after a lost append, a deadlock or a serialization failure', async () => {
    const command = failing(new ConcurrencyError('task-1', 3), postgres('40P01'), postgres('40001'));
    await expect(retryOnConflict(command)).resolves.toBe('done');
    expect(command).toHaveBeenCalledTimes(4);
  });

  it('passes any other error at once, and the last conflict after its attempts', async () => {
    const unique = postgres('23505');
    const other = failing(unique);
    await expect(retryOnConflict(other)).rejects.toBe(unique);
    expect(other).toHaveBeenCalledTimes(1);
    const deadlocks = failing(...Array.from({ length: 5 }, () => postgres('40P01')));
    await expect(retryOnConflict(deadlocks, 3)).rejects.toMatchObject({ code: '40P01' });
    expect(deadlocks).toHaveBeenCalledTimes(3);
  });
});
