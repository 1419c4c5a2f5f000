import { taskCounts } from './task-counts';

describe('taskCounts', () => {
  it('counts sent, delivered and opened cumulatively and the rest exactly', () => {
    const counts = taskCounts([
      { status: 'pending', count: 3 },
      { status: 'sent', count: '2' },
      { status: 'delivered', count: 1 },
      { status: 'opened', count: 1 },
      { status: 'clicked', count: 1 },
      { status: 'bounced', count: 1 },
      { status: 'skipped', count: 2 },
    ]);
    expect(counts).toMatchObject({
      total: 11,
      pending: 3,
      sent: 6,
      delivered: 3,
      opened: 2,
      clicked: 1,
      bounced: 1,
      skipped: 2,
      failed: 0,
    });
  });
});
