import { EventTooLargeError } from '@edm/event-store';
import { describeError } from './global-exception.filter';

describe('describeError', () => {
  it('answers an event too large for the bus with 413, naming what was too large', () => {
    expect(describeError(new EventTooLargeError('TaskCreated', 1_400_000, 786_432))).toEqual([
      413,
      {
        error: {
          code: 'PAYLOAD_TOO_LARGE',
          message: 'the request makes a TaskCreated event of 1400000 bytes; at most 786432 fit',
        },
      },
    ]);
  });
});
