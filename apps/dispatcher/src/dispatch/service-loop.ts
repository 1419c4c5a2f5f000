import { DataSource } from 'typeorm';
import { AppConfig } from '@edm/config';
import { EventMetadata, newEvent } from '@edm/events';
import { trackingKey } from '@edm/domain';
import { EventStore } from '@edm/event-store';
import { MailSender } from '@edm/providers';
import { DispatchService, LeasedSubTask, leaseSubTasks, TaskContent } from './lease-sub-tasks';
import { recordOutcomes, SendResult } from './record-outcomes';
import { renderMail } from './render-mail';
import { decideOutcome } from './send-outcome';
import { PreciseWait } from './precise-wait';
import { paceOf } from './service-capacity';

export interface ServiceLoopDeps {
  dataSource: DataSource;
  store: EventStore;
  config: AppConfig;
  owner: string;
  senderFor(service: DispatchService): MailSender;
  meta(): EventMetadata;
  log(level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void;
  onSend(service: DispatchService, outcome: string): void;
  onRestart(serviceId: string): void;
  /** Seconds a request started after its slot (timer and queueing delay). */
  onPaceLag(seconds: number): void;
}

/**
 * One sending service's loop: lease what the service may send now, send it, record the outcomes,
 * again. Sends run in the background (up to DISPATCH_CONCURRENCY) so a slow provider does not
 * slow the pace. Woken by events; polls as a safety net; restarts itself if it ever throws.
 */
export class ServiceLoop {
  private running = false;
  private done?: Promise<void>;
  private sleeps = new WakeableSleep();
  /** Set by stop: recording outcomes is retried no later than this (local clock). */
  private stopDeadline = Infinity;
  private readonly inFlight = new Set<Promise<void>>();
  /** After an automatic unfreeze, one mail at a time until one gets through. */
  private probing = false;
  /** Requests of this loop start one after another, in slot order, never closer than the pace. */
  private gate: Promise<void> = Promise.resolve();
  /** When this loop's last request started (`performance.now()`; -Infinity: none yet). */
  private lastRequestAt = -Infinity;
  private readonly waits = new PreciseWait();
  private readonly linkKey: Buffer;

  constructor(
    readonly serviceId: string,
    private readonly deps: ServiceLoopDeps,
  ) {
    this.linkKey = trackingKey(deps.config.encryptionKey);
  }

  get sendsInFlight(): number {
    return this.inFlight.size;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.sleeps = new WakeableSleep();
    this.stopDeadline = Infinity;
    this.done = this.supervise();
  }

  /**
   * Stops leasing at once, then waits for the sends in flight to be recorded. Their recording
   * is retried for at most half the shutdown time: the rest is for releasing what was never
   * sent and closing, before the process is made to exit.
   */
  async stop(): Promise<void> {
    this.running = false;
    this.stopDeadline = Date.now() + this.deps.config.SHUTDOWN_TIMEOUT_MS / 2;
    this.sleeps.stop();
    await this.done;
    await Promise.allSettled([...this.inFlight]);
  }

  /** A wake-up that finds the loop busy is kept, so its next sleep returns at once. */
  wake(): void {
    this.sleeps.wake();
  }

  private async supervise(): Promise<void> {
    let backoff = 0;
    while (this.running) {
      const started = Date.now();
      try {
        await this.run();
      } catch (error) {
        backoff = restartBackoffMs(backoff, Date.now() - started);
        this.deps.onRestart(this.serviceId);
        this.deps.log('error', 'service loop crashed; restarting', {
          serviceId: this.serviceId,
          error: String(error),
          restartInMs: backoff,
        });
        await this.sleeps.sleep(backoff);
      }
    }
  }

  private async run(): Promise<void> {
    const { config } = this.deps;
    while (this.running) {
      if (this.inFlight.size >= config.DISPATCH_CONCURRENCY) {
        await Promise.race(this.inFlight);
        continue;
      }
      const leasedAt = Date.now();
      const result = await this.deps.dataSource.transaction(async (tx) => {
        const lease = await leaseSubTasks(
          tx,
          this.deps.store,
          {
            serviceId: this.serviceId,
            owner: this.deps.owner,
            maxBatch: this.probing ? 1 : config.DISPATCH_MAX_BATCH,
            leaseMs: config.DISPATCH_LEASE_MS,
          },
          this.deps.meta(),
        );
        // Made before the commit: a service whose sender cannot be made (credentials that no
        // longer open) leases nothing, and its loop restarts with backoff, logged and counted.
        return lease.kind === 'leased' ? { ...lease, sender: this.deps.senderFor(lease.service) } : lease;
      });
      switch (result.kind) {
        case 'leased': {
          const offset = result.databaseNow.getTime() - Date.now();
          const sendAt = result.notBefore.map((at) => at.getTime() - offset);
          // The lease expires DISPATCH_LEASE_MS after its transaction began, which was after
          // `leasedAt`: recording stops trying well before anyone may reclaim the batch.
          const recordBy = leasedAt + config.DISPATCH_LEASE_MS - recordingMarginMs(config.DISPATCH_LEASE_MS);
          const work = this.send(
            result.service,
            result.sender,
            result.content,
            result.leased,
            sendAt,
            recordBy,
            result.quotaWindowStart,
          ).catch((error: unknown) =>
            this.deps.log('error', 'recording sends failed; their leases will be reclaimed', {
              serviceId: this.serviceId,
              error: String(error),
            }),
          );
          this.inFlight.add(work);
          void work.finally(() => this.inFlight.delete(work));
          break;
        }
        case 'pace':
          await this.sleeps.sleep(Math.min(result.waitMs, config.DISPATCH_POLL_INTERVAL_MS), false);
          break;
        case 'not-active':
          if (!result.service) return void (this.running = false);
          if (
            result.service.status === 'frozen' &&
            result.service.frozenUntil &&
            result.service.frozenUntil.getTime() <= Date.now()
          ) {
            await this.unfreezeForProbe();
          } else {
            const untilThaw = result.service.frozenUntil
              ? result.service.frozenUntil.getTime() - Date.now()
              : Infinity;
            await this.sleeps.sleep(Math.max(10, Math.min(untilThaw, config.DISPATCH_POLL_INTERVAL_MS)));
          }
          break;
        default:
          await this.sleeps.sleep(config.DISPATCH_POLL_INTERVAL_MS);
      }
    }
  }

  /** Sends each mail of a leased batch (already `sending`) on its slot's time (local clock). */
  private async send(
    service: DispatchService,
    sender: MailSender,
    task: TaskContent,
    leased: LeasedSubTask[],
    sendAt: number[],
    recordBy: number,
    quotaWindowStart: Date,
  ): Promise<void> {
    const { dataSource, store, config } = this.deps;
    const policy = {
      maxAttempts: config.DISPATCH_MAX_ATTEMPTS,
      retryBaseMs: config.DISPATCH_RETRY_BASE_MS,
      retryMaxMs: config.DISPATCH_RETRY_MAX_MS,
      idempotentProvider: sender.supportsIdempotency,
      random: Math.random,
    };
    const { minGapMs } = paceOf(service.limits.pace);
    const results: SendResult[] = await Promise.all(
      leased.map(async (subTask, i) => {
        const mail = renderMail({
          subTaskId: subTask.id,
          taskId: subTask.taskId,
          trackingId: subTask.trackingId,
          email: subTask.email,
          contactName: subTask.contactName,
          attributes: subTask.attributes ?? {},
          subject: task.subject,
          html: task.html,
          text: task.text,
          from: { email: service.fromEmail, ...(service.fromName ? { name: service.fromName } : {}) },
          trackingBaseUrl: config.TRACKING_BASE_URL,
          linkKey: service.provider === 'smtp' ? this.linkKey : null,
        });
        const outcome = await this.onSlot(sendAt[i], minGapMs, () =>
          sender.send(mail, AbortSignal.timeout(config.DISPATCH_SEND_TIMEOUT_MS)),
        );
        this.deps.onSend(service, outcome.kind);
        return {
          subTask,
          decision: decideOutcome(
            { ...subTask, subTaskId: subTask.id, serviceId: service.id },
            outcome,
            policy,
            new Date(),
          ),
        };
      }),
    );
    if (results.some((r) => r.decision.event.type === 'SubTaskSent')) this.probing = false;
    const freezeUntil = (count: number) =>
      new Date(Date.now() + config.DISPATCH_FREEZE_COOLDOWN_MS * 2 ** Math.min(count, 6));
    // The outcomes are known only here: a database outage must not lose them to the reaper
    // (which could only call them unknown), so recording is retried while the lease is ours.
    await retryUntil(
      () =>
        dataSource.transaction((tx) =>
          recordOutcomes(
            tx,
            store,
            service,
            results,
            quotaWindowStart,
            freezeUntil,
            this.deps.meta(),
            this.deps.owner,
            (subTaskId, outcome, status) =>
              this.deps.log('warn', 'outcome of a lease no longer held was dropped', {
                subTaskId,
                outcome,
                status,
              }),
          ),
        ),
      () => Math.min(recordBy, this.stopDeadline),
      (attempt, error, retryInMs) =>
        this.deps.log('warn', 'recording send outcomes failed', {
          serviceId: service.id,
          attempt,
          retryInMs,
          error: String(error),
        }),
    );
  }

  /**
   * Waits for the slot's time, then issues the request in the same synchronous turn as the time
   * it is stamped with: nothing (another send's continuation, a database answer) runs between
   * them. A request that started late (a cold first send) pushes the next one back as far as
   * needed, so no two requests of this loop are ever closer than `minGapMs`; slots are a little
   * further apart than that, so the loop catches up with them again. Slots are on the wall clock
   * (they come from Postgres); the gaps are kept on the monotonic clock, to a fraction of a
   * millisecond (PreciseWait): in whole milliseconds, every gap at 15 mails/s came out at least
   * the slots' own spacing, and the loop fell about a second behind its slots within minutes.
   */
  private onSlot<T>(slotAt: number, minGapMs: number, request: () => Promise<T>): Promise<T> {
    let issued: Promise<T> | undefined;
    const turn = this.gate.then(async () => {
      const slot = performance.now() + (slotAt - Date.now());
      const at = minGapMs > 0 ? Math.max(slot, this.lastRequestAt + minGapMs) : slot;
      await this.waits.until(at);
      this.lastRequestAt = performance.now();
      issued = request();
      if (minGapMs > 0) this.deps.onPaceLag(Math.max(0, this.lastRequestAt - slot) / 1_000);
    });
    this.gate = turn;
    return turn.then(() => issued!);
  }

  /** The cool-down is over: unfreeze (once, whichever replica gets here first) and probe with one mail. */
  private async unfreezeForProbe(): Promise<void> {
    const unfrozen = await this.deps.dataSource.transaction(async (tx) => {
      const [row] = await tx.query(
        `SELECT status, frozen_until FROM sending_services WHERE id = $1 FOR UPDATE`,
        [this.serviceId],
      );
      if (row?.status !== 'frozen' || !row.frozen_until || row.frozen_until > new Date()) return false;
      await this.deps.store.append(
        tx,
        [
          {
            streamId: `service-${this.serviceId}`,
            expectedVersion: 'any',
            events: [
              newEvent('ServiceUnfrozen', {
                serviceId: this.serviceId,
                reason: 'cool-down over: probing with one mail',
              }),
            ],
          },
        ],
        this.deps.meta(),
      );
      return true;
    });
    if (unfrozen) {
      this.probing = true;
      this.deps.log('info', 'service unfrozen for a probe', { serviceId: this.serviceId });
    }
  }
}

const RESTART_BACKOFF_MIN_MS = 500;
const RESTART_BACKOFF_MAX_MS = 30_000;

/**
 * The wait before a crashed service loop starts again: doubling from 500 ms up to 30 s while it
 * crashes again and again, and from 500 ms again after a run that lasted longer than the longest
 * wait, so that a crash now and then over days does not leave every later one waiting 30 s.
 */
export function restartBackoffMs(previousMs: number, ranMs: number): number {
  if (previousMs === 0 || ranMs > RESTART_BACKOFF_MAX_MS) return RESTART_BACKOFF_MIN_MS;
  return Math.min(previousMs * 2, RESTART_BACKOFF_MAX_MS);
}

/**
 * How long before its lease expires a batch's recording stops being retried: the last attempt's
 * own time (waiting for locks) and the drift between the local and the database clock.
 */
export function recordingMarginMs(leaseMs: number): number {
  return Math.min(10_000, leaseMs / 4);
}

const RECORDING_RETRY_BASE_MS = 250;
const RECORDING_RETRY_MAX_MS = 5_000;

/**
 * Runs `attempt` until it succeeds, waiting between failures with a backoff that doubles up to a
 * cap. Past `deadline()` (read after each failure, so it can be brought forward) the last error
 * is thrown; the last wait is cut to end at the deadline, so there is one attempt there.
 */
export async function retryUntil<T>(
  attempt: () => Promise<T>,
  deadline: () => number,
  onFailure: (attempt: number, error: unknown, retryInMs: number | null) => void,
  now: () => number = Date.now,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
): Promise<T> {
  for (let n = 1; ; n += 1) {
    try {
      return await attempt();
    } catch (error) {
      const left = deadline() - now();
      const retryInMs =
        left > 0
          ? Math.min(left, RECORDING_RETRY_BASE_MS * 2 ** Math.min(n - 1, 16), RECORDING_RETRY_MAX_MS)
          : null;
      onFailure(n, error, retryInMs);
      if (retryInMs === null) throw error;
      await sleep(retryInMs);
    }
  }
}

/**
 * The loop's sleeps. A wake-up cuts a wakeable sleep short; one that finds no such sleep (the
 * loop busy, or in a pace sleep, which it must not shorten) is kept, and the next wakeable sleep
 * returns at once. After stop, every sleep, a pace sleep too, returns at once.
 */
export class WakeableSleep {
  private woken = false;
  private stopped = false;
  private current?: { wakeable: boolean; end: () => void };

  wake(): void {
    if (this.current?.wakeable) this.current.end();
    else this.woken = true;
  }

  stop(): void {
    this.stopped = true;
    this.current?.end();
  }

  sleep(ms: number, wakeable = true): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (wakeable && this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const sleep = {
        wakeable,
        end: () => {
          clearTimeout(timer);
          if (this.current === sleep) this.current = undefined;
          resolve();
        },
      };
      const timer = setTimeout(sleep.end, ms);
      this.current = sleep;
    });
  }
}
