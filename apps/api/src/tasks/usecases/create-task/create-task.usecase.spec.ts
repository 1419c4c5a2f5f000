import { EVENT_MAX_BYTES, SubTaskSeed } from '@edm/events';
import { uuidv7 } from '@edm/event-store';
import { SUBTASK_CHUNK, subTaskChunks } from './create-task.usecase';

const seed = (email: string): SubTaskSeed => ({
  id: uuidv7(),
  contactId: uuidv7(),
  email,
  trackingId: uuidv7().replace(/-/g, ''),
  status: 'pending',
});

describe('subTaskChunks', () => {
  it('lists SUBTASK_CHUNK sub-tasks an event for ordinary addresses, in order, none lost', () => {
    const seeds = Array.from({ length: 5_001 }, (_, i) => seed(`reader${i}@example.com`));
    const chunks = subTaskChunks(seeds);
    expect(chunks.map((c) => c.length)).toEqual([SUBTASK_CHUNK, SUBTASK_CHUNK, 1_001]);
    expect(chunks.flat()).toEqual(seeds);
  });

  it('lists fewer where addresses are long, so that no event passes what the bus carries', () => {
    const long = (i: number) => `${'x'.repeat(64)}${i}@${'d'.repeat(240)}.example`;
    const seeds = Array.from({ length: 4_000 }, (_, i) => seed(long(i)));
    const chunks = subTaskChunks(seeds);
    expect(chunks.length).toBeGreaterThan(2);
    expect(chunks.flat()).toEqual(seeds);
    for (const subTasks of chunks) {
      const event = JSON.stringify({ taskId: uuidv7(), accountId: uuidv7(), chunk: 99, subTasks });
      expect(Buffer.byteLength(event)).toBeLessThan(EVENT_MAX_BYTES - 32 * 1024);
    }
  });
});
