import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { createJwtIssuer, isJwtError, type JwtError } from '../../src/testing/jwt';

const secret = 'super-secret-jwt-token-with-at-least-32-characters-long';

async function failure(promise: Promise<unknown>): Promise<JwtError> {
  try {
    await promise;
  } catch (error) {
    if (isJwtError(error)) return error;
    throw error;
  }
  throw new Error('expected a JwtError');
}

describe('createJwtIssuer', () => {
  it('issues Supabase-shaped API keys and user tokens that verify', async () => {
    const jwt = createJwtIssuer(secret);
    const anon = await jwt.verify(await jwt.anonKey());
    expect(anon).toMatchObject({ role: 'anon', iss: 'supabase' });
    expect(anon.exp).toBeGreaterThan(Date.now() / 1000 + 5 * 365 * 24 * 3600);
    await expect(jwt.verify(await jwt.serviceRoleKey())).resolves.toMatchObject({ role: 'service_role' });
    const user = await jwt.verify(
      await jwt.userToken({ sub: 'u-1', email: 'u@example.test', expiresIn: 60 }),
    );
    expect(user).toMatchObject({
      sub: 'u-1',
      role: 'authenticated',
      aud: 'authenticated',
      email: 'u@example.test',
    });
    expect(user.exp - Math.floor(Date.now() / 1000)).toBeLessThanOrEqual(60);
  });

  it('reports each failure kind with the Realtime wording', async () => {
    let now = Date.now();
    const jwt = createJwtIssuer(secret, { now: () => now });
    const other = createJwtIssuer(`${secret}-other`);

    expect((await failure(jwt.verify(''))).kind).toBe('missing');
    expect((await failure(jwt.verify('not-a-jwt'))).kind).toBe('malformed');
    const forged = await failure(jwt.verify(await other.anonKey()));
    expect(forged).toMatchObject({ kind: 'signature', message: 'Failed to validate JWT signature' });

    const token = await jwt.sign({ role: 'authenticated', sub: 'u' }, { expiresIn: 10 });
    now += 13_000;
    const expired = await failure(jwt.verify(token));
    expect(expired).toMatchObject({
      kind: 'expired',
      expiredSecondsAgo: 3,
      message: 'Token has expired 3 seconds ago',
    });

    const key = new TextEncoder().encode(secret);
    const noRole = await new SignJWT({ exp: Math.floor(now / 1000) + 60 })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(key);
    expect((await failure(jwt.verify(noRole))).kind).toBe('claims');
    await expect(jwt.verifyPayload(noRole)).resolves.toMatchObject({ exp: expect.any(Number) });
    const fractionalExp = await new SignJWT({ role: 'anon', exp: Math.floor(now / 1000) + 60.5 })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(key);
    expect((await failure(jwt.verify(fractionalExp))).kind).toBe('exp_invalid');
    const textExp = await new SignJWT(JSON.parse('{"role":"anon","exp":"soon"}'))
      .setProtectedHeader({ alg: 'HS256' })
      .sign(key);
    expect((await failure(jwt.verify(textExp))).kind).toBe('exp_invalid');
  });
});
