/**
 * The message of anything thrown. Duck-typed rather than `instanceof Error`, because errors from Node's own
 * fetch and sockets can come from another realm (e.g. under Jest) and would fail that test.
 */
export function errorMessage(value: unknown): string {
  const message = propertyOf(value, 'message');
  return typeof message === 'string' ? message : String(value);
}

export function propertyOf(value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null && key in value ? Reflect.get(value, key) : undefined;
}
