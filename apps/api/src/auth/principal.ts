import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { Request } from 'express';

/** Who is calling: resolved from the API key by the guard, read by controllers. */
export interface Principal {
  keyId: string;
  accountId: string;
  role: 'admin' | 'account';
}

export type AuthenticatedRequest = Request & { principal?: Principal };

export const CurrentPrincipal = createParamDecorator((_: unknown, context: ExecutionContext): Principal => {
  const principal = context.switchToHttp().getRequest<AuthenticatedRequest>().principal;
  if (!principal) throw new Error('route is not behind the API key guard');
  return principal;
});
