import { InitialSchema1764288000000 } from './1764288000000-initial-schema';
import { DispatchState1764291600000 } from './1764291600000-dispatch-state';
import { WebhookIntake1764295200000 } from './1764295200000-webhook-intake';
import { Monitoring1764298800000 } from './1764298800000-monitoring';
import { PendingMatchIndexes1764302400000 } from './1764302400000-pending-match-indexes';
import { LeaseOrderIndex1764306000000 } from './1764306000000-lease-order-index';
import { SentOnlyIndexes1764309600000 } from './1764309600000-sent-only-indexes';
import { NotifyAfterCommit1764313200000 } from './1764313200000-notify-after-commit';

/** Every migration, oldest first. A new one is appended here; none is ever edited once released. */
export const migrations = [
  InitialSchema1764288000000,
  DispatchState1764291600000,
  WebhookIntake1764295200000,
  Monitoring1764298800000,
  PendingMatchIndexes1764302400000,
  LeaseOrderIndex1764306000000,
  SentOnlyIndexes1764309600000,
  NotifyAfterCommit1764313200000,
];
