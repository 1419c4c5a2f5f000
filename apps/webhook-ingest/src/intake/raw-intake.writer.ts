import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Metrics } from '@edm/observability';

export interface RawIntake {
  id: string;
  source: string;
  serviceId: string | null;
  path: string;
  headers: Record<string, string>;
  rawBody: string;
  verified: boolean;
}

interface Waiting {
  row: RawIntake;
  resolve: () => void;
  reject: (error: unknown) => void;
}

const MAX_BATCH = 500;

/**
 * Store first, with group commit: requests that arrive while one INSERT is in flight are written
 * together by the next one, so many webhooks share one transaction (one fsync). A request is
 * answered only after its row committed; if Postgres fails, every request of that batch gets the
 * error (and a 503), never a 2xx.
 */
@Injectable()
export class RawIntakeWriter {
  private committed = 0;
  private queue: Waiting[] = [];
  private flushing = false;
  private readonly listeners: (() => void)[] = [];
  private readonly batchSize;

  constructor(
    private readonly dataSource: DataSource,
    metrics: Metrics,
  ) {
    this.batchSize = metrics.histogram(
      'edm_webhook_commit_batch_size',
      'Webhook requests committed per transaction.',
      [],
      [1, 2, 5, 10, 20, 50, 100, 200, 500],
    );
  }

  /** Requests committed since start. */
  get stored(): number {
    return this.committed;
  }

  onStored(listener: () => void): void {
    this.listeners.push(listener);
  }

  store(row: RawIntake): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ row, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.queue.length) {
      const batch = this.queue.splice(0, MAX_BATCH);
      try {
        await this.insert(batch.map((w) => w.row));
        this.batchSize.observe(batch.length);
        this.committed += batch.length;
        batch.forEach((w) => w.resolve());
      } catch (error) {
        if (batch.length === 1) {
          batch[0].reject(error);
          continue;
        }
        // One row the database refuses must not fail the requests it was batched with.
        for (const waiting of batch) {
          await this.insert([waiting.row]).then(() => {
            this.committed += 1;
            waiting.resolve();
          }, waiting.reject);
        }
      }
      this.listeners.forEach((l) => l());
    }
    this.flushing = false;
  }

  private async insert(rows: RawIntake[]): Promise<void> {
    await this.dataSource.query(
      `INSERT INTO event_logs (id, source, service_id, path, headers, raw_body, verified)
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::jsonb[], $6::text[], $7::boolean[])`,
      [
        rows.map((r) => r.id),
        rows.map((r) => r.source),
        rows.map((r) => r.serviceId),
        rows.map((r) => r.path),
        rows.map((r) => JSON.stringify(r.headers)),
        rows.map((r) => r.rawBody),
        rows.map((r) => r.verified),
      ],
    );
  }
}
