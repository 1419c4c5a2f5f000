import { EventMetadata } from '@edm/events';
import { uuidv7 } from '@edm/event-store';
import { Principal } from './principal';

export const commandMetadata = (principal: Principal): EventMetadata => ({
  correlationId: uuidv7(),
  causationId: null,
  actor: `api-key:${principal.keyId}`,
});
