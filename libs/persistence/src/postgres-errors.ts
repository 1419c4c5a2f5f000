/** SQLSTATE codes the code base reacts to. */
export const PG_UNIQUE_VIOLATION = '23505';
export const PG_SERIALIZATION_FAILURE = '40001';
export const PG_DEADLOCK = '40P01';

export const pgErrorCode = (error: unknown): string | undefined => {
  if (typeof error !== 'object' || error === null) return undefined;
  const direct = (error as { code?: unknown }).code;
  if (typeof direct === 'string') return direct;
  const driverError = (error as { driverError?: { code?: unknown } }).driverError;
  return typeof driverError?.code === 'string' ? driverError.code : undefined;
};

/**
 * The database refused the rows themselves (SQLSTATE class 22, data exception, or 23, integrity
 * violation), as opposed to the connection or the server failing: the same rows sent apart, all
 * but the offending ones would be taken.
 */
export const refusesRows = (error: unknown): boolean => /^2[23]/.test(pgErrorCode(error) ?? '');
