import { createHash, randomBytes } from 'node:crypto';

/** Keys are shown once; only their SHA-256 is stored. The prefix helps operators tell them apart. */
export function generateApiKey(kind: 'admin' | 'account'): { key: string; hash: string; prefix: string } {
  const key = `edm_${kind === 'admin' ? 'adm' : 'acc'}_${randomBytes(24).toString('base64url')}`;
  return { key, hash: hashApiKey(key), prefix: key.slice(0, 12) };
}

export const hashApiKey = (key: string): string => createHash('sha256').update(key).digest('hex');
