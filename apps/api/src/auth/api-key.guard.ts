import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { DomainError } from '@edm/platform';
import { hashApiKey } from './api-key';
import { AuthenticatedRequest, Principal } from './principal';

/** Every route under /api/v1 needs `Authorization: Bearer <key>`; health, metrics and docs do not. */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(private readonly dataSource: DataSource) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    if (!request.path.startsWith('/api/v1')) return true;
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S{1,200})$/i.exec(header) : null;
    if (!match) throw new DomainError('UNAUTHENTICATED', 'missing API key: send Authorization: Bearer <key>');
    const [row]: { id: string; account_id: string; role: Principal['role'] }[] = await this.dataSource.query(
      `SELECT id, account_id, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL`,
      [hashApiKey(match[1])],
    );
    if (!row) throw new DomainError('UNAUTHENTICATED', 'unknown or revoked API key');
    request.principal = { keyId: row.id, accountId: row.account_id, role: row.role };
    return true;
  }
}

export function requireAdmin(principal: Principal): void {
  if (principal.role !== 'admin') throw new DomainError('FORBIDDEN', 'this needs the admin key');
}
