import { Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { uuidv7 } from '@edm/event-store';
import { DomainError } from '@edm/platform';
import { RawIntakeWriter } from '../intake/raw-intake.writer';
import { TrackingHit } from './tracking-hit';

export const TRACKING_ID = /^[0-9a-f]{32}$/;

/** Tracking hits are stored first, like webhooks, and applied by the same processor. */
@Injectable()
export class TrackingHitRecorder {
  constructor(private readonly writer: RawIntakeWriter) {}

  async record(request: Request, hit: Omit<TrackingHit, 'at'>): Promise<void> {
    if (!TRACKING_ID.test(hit.trackingId)) throw new DomainError('NOT_FOUND', 'unknown link');
    try {
      await this.writer.store({
        id: uuidv7(),
        source: 'tracking',
        serviceId: null,
        path: request.path,
        headers: { 'user-agent': String(request.headers['user-agent'] ?? '').slice(0, 512) },
        rawBody: JSON.stringify({ ...hit, at: new Date().toISOString() }),
        verified: false,
      });
    } catch {
      throw new DomainError('UNAVAILABLE', 'please try again in a moment');
    }
  }
}
