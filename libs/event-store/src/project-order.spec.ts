import { DataSource, EntityManager } from 'typeorm';
import { DomainEvent, EventType } from '@edm/events';
import { EventStore } from './event-store';
import { Projection } from './projection';

/** A projection that notes each run of events it is given, by type. */
const noting = (name: string, handles: EventType[], runs: string[]): Projection => ({
  name,
  tables: [],
  handles,
  apply: async (_tx, events) => void runs.push(`${name}:${events.map((e) => e.type).join(',')}`),
});

const event = (type: EventType, i: number) => ({ type, id: `e${i}` }) as unknown as DomainEvent;

describe('EventStore.project', () => {
  it('applies events in their order across projections, each consecutive run at once', async () => {
    const runs: string[] = [];
    const store = new EventStore({} as DataSource);
    store.register(
      noting('tasks', ['TaskCancelled', 'TaskCompleted'], runs),
      noting('sub-tasks', ['SubTaskRetryScheduled', 'SubTaskSent'], runs),
    );
    // Retries that put sub-tasks back to pending, then the cancel that cancels the pending ones:
    // the cancel must come after the retries, as it did when they were appended.
    const types: EventType[] = [
      'SubTaskRetryScheduled',
      'SubTaskRetryScheduled',
      'TaskCancelled',
      'SubTaskSent',
      'TaskCompleted',
    ];
    await store.project({} as EntityManager, types.map(event));
    expect(runs).toEqual([
      'sub-tasks:SubTaskRetryScheduled,SubTaskRetryScheduled',
      'tasks:TaskCancelled',
      'sub-tasks:SubTaskSent',
      'tasks:TaskCompleted',
    ]);
  });

  it('gives an event several projections handle to each in registration order, and skips what none handles', async () => {
    const runs: string[] = [];
    const store = new EventStore({} as DataSource);
    store.register(noting('a', ['TaskCancelled'], runs), noting('b', ['TaskCancelled', 'TaskPaused'], runs));
    const types: EventType[] = ['TaskCancelled', 'TaskCancelled', 'TaskResumed', 'TaskPaused'];
    await store.project({} as EntityManager, types.map(event));
    expect(runs).toEqual(['a:TaskCancelled,TaskCancelled', 'b:TaskCancelled,TaskCancelled', 'b:TaskPaused']);
  });
});
