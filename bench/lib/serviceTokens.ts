/**
 * Supabase-shaped HS256 access tokens for the service benchmark's simulated users, signed with `node:crypto`
 * (cheaper than jose when tens of thousands are needed), and fresh user ids.
 *
 * @packageDocumentation
 */
import { createHmac, randomUUID } from 'node:crypto';

/** JWT secret of the benchmark's service nodes (any string of 32+ characters). */
export const BENCH_JWT_SECRET = 'supabase-matchmaker-service-benchmark-secret-0123456789';

function base64url(value: string | Buffer): string {
  return Buffer.from(value).toString('base64url');
}

/** A token for `userId` (`sub`), audience `authenticated`, valid `lifetimeSeconds` (default 2 hours). */
export function signBenchToken(userId: string, secret = BENCH_JWT_SECRET, lifetimeSeconds = 7_200): string {
  const now = Math.floor(Date.now() / 1_000);
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = base64url(
    JSON.stringify({
      iss: 'supabase',
      sub: userId,
      aud: 'authenticated',
      role: 'authenticated',
      iat: now,
      exp: now + lifetimeSeconds,
    }),
  );
  const signature = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

/** A fresh user id (a UUID, like Supabase's). */
export function newBenchUserId(): string {
  return randomUUID();
}
