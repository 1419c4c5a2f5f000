import { InitialSchema1764288000000 } from './1764288000000-initial-schema';

/** Every migration, oldest first. A new one is appended here; none is ever edited once released. */
export const migrations = [InitialSchema1764288000000];
