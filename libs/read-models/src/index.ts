import { Projection } from '@edm/event-store';
import { accountsProjection } from './accounts.projection';
import { alertsProjection } from './alerts.projection';
import { contactsProjection } from './contacts.projection';
import { servicesProjection } from './services.projection';
import { subTasksProjection } from './sub-tasks.projection';
import { tasksProjection } from './tasks.projection';
import { templatesProjection } from './templates.projection';

export {
  accountsProjection,
  contactsProjection,
  servicesProjection,
  subTasksProjection,
  tasksProjection,
  templatesProjection,
};

/** Every inline projection, in the order a rebuild must apply them (parents before children). */
export const allProjections: readonly Projection[] = [
  accountsProjection,
  servicesProjection,
  contactsProjection,
  templatesProjection,
  tasksProjection,
  subTasksProjection,
  alertsProjection,
];
