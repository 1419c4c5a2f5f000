import { DatabaseError } from 'pg';
import { pgErrorCode, refusesRows } from './postgres-errors';

const serverError = (code: string) => Object.assign(new DatabaseError('refused', 0, 'error'), { code });

describe('Postgres errors', () => {
  it('reads the SQLSTATE from the driver error or from TypeORM around it', () => {
    expect(pgErrorCode(serverError('23505'))).toBe('23505');
    expect(pgErrorCode({ driverError: serverError('40001') })).toBe('40001');
    expect(pgErrorCode(new Error('plain'))).toBeUndefined();
    expect(pgErrorCode(null)).toBeUndefined();
  });

  it('tells a refusal of the rows from a failure of the connection or the server', () => {
    for (const code of ['22P02', '22021', '23505', '23502'])
      expect(refusesRows(serverError(code))).toBe(true);
    for (const code of ['57P01', '08006', '53300', '40001'])
      expect(refusesRows(serverError(code))).toBe(false);
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    expect(refusesRows(refused)).toBe(false);
    expect(refusesRows(new Error('Connection terminated unexpectedly'))).toBe(false);
  });
});
