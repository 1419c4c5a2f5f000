import { Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { DomainEvent } from '@edm/events';
import { handleOnce } from '@edm/messaging';
import { EventBusSubscriber } from '@edm/platform';

/**
 * Sub-task events that take work off a task for good, besides a send. Leases, sends about to
 * start, releases and scheduled retries leave the work where it was (a dispatcher that leases and
 * never sends is the wedge task-stalled must catch), and webhooks (SubTaskProgressed) answer mail
 * already sent: opens of the first mails of a campaign keep coming while the rest is stuck.
 */
const SUB_TASK_ENDS = ['SubTaskFailed', 'SubTaskUnknown', 'SubTaskSkipped', 'SubTaskCancelled'] as const;

const isSubTaskEnd = (
  event: DomainEvent,
): event is Extract<DomainEvent, { type: (typeof SUB_TASK_ENDS)[number] }> =>
  (SUB_TASK_ENDS as readonly string[]).includes(event.type);

/**
 * What the rules need from the event stream: per service the last send and the last webhook
 * (and the oldest send not yet answered by any webhook), per task its last progress: the last
 * sub-task sent or ended, which webhooks, leases and retries do not move. Each event
 * is applied once (handleOnce); timestamps only move forward, so redelivery order does not matter.
 */
@Injectable()
export class MonitorStateListener implements OnApplicationBootstrap {
  constructor(
    private readonly dataSource: DataSource,
    private readonly bus: EventBusSubscriber,
  ) {}

  onApplicationBootstrap(): void {
    this.bus.addListener((event) => this.apply(event));
  }

  async apply(event: DomainEvent): Promise<void> {
    const at = event.occurredAt;
    // Sends are recorded a batch per task at once (SubTaskBatchSent); SubTaskSent is one send,
    // as recorded before.
    if (event.type === 'SubTaskBatchSent' || event.type === 'SubTaskSent') {
      await handleOnce(this.dataSource, 'monitor-state', event, async (tx) => {
        await tx.query(
          `INSERT INTO monitor_service_state (service_id, last_sent_at, first_unanswered_sent_at) VALUES ($1, $2, $2)
           ON CONFLICT (service_id) DO UPDATE SET
             last_sent_at = greatest(monitor_service_state.last_sent_at, excluded.last_sent_at),
             first_unanswered_sent_at = CASE
               WHEN monitor_service_state.last_webhook_at >= excluded.last_sent_at THEN monitor_service_state.first_unanswered_sent_at
               ELSE coalesce(monitor_service_state.first_unanswered_sent_at, excluded.last_sent_at) END`,
          [event.data.serviceId, at],
        );
        await this.progress(tx, event.data.taskId, at);
      });
    } else if (event.type === 'MailEventRecorded' || event.type === 'MailEventsRecorded') {
      // Recorded provider events, one (as recorded before batches) or a batch of one type.
      const records = event.type === 'MailEventsRecorded' ? event.data.events : [event.data];
      const serviceIds = [...new Set(records.flatMap((r) => (r.serviceId ? [r.serviceId] : [])))].sort();
      if (serviceIds.length === 0) return;
      await handleOnce(this.dataSource, 'monitor-state', event, async (tx) => {
        await tx.query(
          `INSERT INTO monitor_service_state (service_id, last_webhook_at) SELECT unnest($1::uuid[]), $2
           ON CONFLICT (service_id) DO UPDATE SET
             last_webhook_at = greatest(monitor_service_state.last_webhook_at, excluded.last_webhook_at),
             first_unanswered_sent_at = CASE WHEN monitor_service_state.first_unanswered_sent_at <= excluded.last_webhook_at THEN NULL
                                             ELSE monitor_service_state.first_unanswered_sent_at END`,
          [serviceIds, at],
        );
      });
    } else if (isSubTaskEnd(event)) {
      const taskId = event.data.taskId;
      await handleOnce(this.dataSource, 'monitor-state', event, (tx) => this.progress(tx, taskId, at));
    }
  }

  private async progress(tx: EntityManager, taskId: string, at: string): Promise<void> {
    await tx.query(
      `INSERT INTO monitor_task_state (task_id, last_progress_at) VALUES ($1, $2)
       ON CONFLICT (task_id) DO UPDATE SET last_progress_at = greatest(monitor_task_state.last_progress_at, excluded.last_progress_at)`,
      [taskId, at],
    );
  }
}
