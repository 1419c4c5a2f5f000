import { BATCH_EVENT_MAX_BYTES } from '@edm/events';
import { byPayloadSize } from './record-outcomes';

const send = (i: number, id: string | null) => ({
  subTaskId: `0193a0b2-0000-7000-8000-${String(i).padStart(12, '0')}`,
  providerMessageId: id,
  sentAt: '2026-12-06T12:00:00.000Z',
});

describe('byPayloadSize', () => {
  it('keeps a batch of ordinary sends in one part', () => {
    const sent = Array.from({ length: 1_000 }, (_, i) => send(i, `<${i}.msg@mail.example.com>`));
    expect(byPayloadSize(sent)).toEqual([sent]);
  });

  it('splits long message ids into parts whose events stay under the limit, in order, none lost', () => {
    const sent = Array.from({ length: 1_000 }, (_, i) => send(i, 'x'.repeat(900) + i));
    const parts = byPayloadSize(sent);
    expect(parts.length).toBeGreaterThan(3);
    expect(parts.flat()).toEqual(sent);
    for (const part of parts) {
      const event = JSON.stringify({ taskId: sent[0].subTaskId, serviceId: sent[0].subTaskId, sent: part });
      expect(Buffer.byteLength(event)).toBeLessThanOrEqual(BATCH_EVENT_MAX_BYTES + 1_000);
    }
  });

  it('gives an id larger than the limit a part of its own, and nothing for no sends', () => {
    const sent = [send(1, 'a'), send(2, 'b'.repeat(300_000)), send(3, null)];
    expect(byPayloadSize(sent)).toEqual([[sent[0]], [sent[1]], [sent[2]]]);
    expect(byPayloadSize([])).toEqual([]);
  });
});
