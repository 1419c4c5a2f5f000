import { OutgoingMail } from '../mail-sender';

export const SAMPLE_TRACKING_ID = '3f1c9a52-0d7e-4b8e-9a51-6f0c2d9b7e11';
export const SAMPLE_TASK_ID = '8d2e4b10-5a6c-4f7e-8b9a-0c1d2e3f4a5b';

/** A marketing mail as the dispatcher hands it to a sender. */
export function sampleMail(overrides: Partial<OutgoingMail> = {}): OutgoingMail {
  return {
    trackingId: SAMPLE_TRACKING_ID,
    taskId: SAMPLE_TASK_ID,
    subTaskId: 'b7a1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d',
    idempotencyKey: `subtask-b7a1c2d3-attempt-1`,
    from: { email: 'news@edm.example.com', name: 'EDM News' },
    to: { email: 'reader@example.org', name: 'Ada Reader' },
    subject: 'Our spring offers',
    html: '<p>Hello Ada, see <a href="https://shop.example.com/spring">the offers</a>.</p>',
    text: 'Hello Ada, see the offers: https://shop.example.com/spring',
    messageId: `<${SAMPLE_TRACKING_ID}@edm.example.com>`,
    headers: {
      'X-EDM-Tracking-Id': SAMPLE_TRACKING_ID,
      'List-Unsubscribe': `<https://edm.example.com/u/${SAMPLE_TRACKING_ID}>, <mailto:unsubscribe@edm.example.com?subject=${SAMPLE_TRACKING_ID}>`,
      'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
    },
    customArgs: { edm_tracking_id: SAMPLE_TRACKING_ID, edm_task_id: SAMPLE_TASK_ID },
    ...overrides,
  };
}
