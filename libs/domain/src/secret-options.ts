import { openCredentials, sealCredentials } from './credentials-vault';

/**
 * Option names that hold secrets (webhook app keys, signing keys, passwords): sealed before they
 * enter an event or a table, opened only where a signature is checked, masked in every answer.
 */
export const SECRET_OPTION = /(secret|key|token|pass|signing)/i;

const SEALED = 'sealed:';

/** What answers show in place of a secret option's value. */
export const SECRET_MASK = '********';

const isSecret = (name: string, value: unknown): value is string =>
  SECRET_OPTION.test(name) && typeof value === 'string';

const openedWith = (key: Buffer, value: string): string | undefined => {
  if (!value.startsWith(SEALED)) return undefined;
  try {
    const opened = openCredentials(key, value.slice(SEALED.length));
    return typeof opened === 'string' ? opened : undefined;
  } catch {
    return undefined;
  }
};

/** Every secret-named string option sealed (a value already sealed with this key stays as it is). */
export function sealSecretOptions(key: Buffer, options: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(options).map(([name, value]) =>
      SECRET_OPTION.test(name) &&
      typeof value === 'string' &&
      value !== '' &&
      openedWith(key, value) === undefined
        ? [name, `${SEALED}${sealCredentials(key, value)}`]
        : [name, value],
    ),
  );
}

/** Sealed options opened; options stored before sealing existed pass through as they are. */
export function openSecretOptions(key: Buffer, options: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(options).map(([name, value]) => [
      name,
      typeof value === 'string' ? (openedWith(key, value) ?? value) : value,
    ]),
  );
}

/** Every secret-named string option replaced by the mask, for answers. */
export function maskSecretOptions(options: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(options).map(([name, value]) => [name, isSecret(name, value) ? SECRET_MASK : value]),
  );
}

/**
 * Options sent back as they were read come with their secrets masked: a masked secret keeps the
 * value stored under its name instead of becoming the mask. A mask with nothing stored behind it
 * stands for no value and is left out.
 */
export function keepMaskedSecrets(
  given: Record<string, unknown>,
  stored: Record<string, unknown>,
): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(given).flatMap(([name, value]) => {
      if (value !== SECRET_MASK || !SECRET_OPTION.test(name)) return [[name, value]];
      return isSecret(name, stored[name]) ? [[name, stored[name]]] : [];
    }),
  );
}
