import { createRemoteJWKSet, errors, type JWTPayload, type JWTVerifyGetKey, jwtVerify } from 'jose';

/** How the server checks Supabase access tokens. At least one of `jwtSecret` and `jwksUrl` is required. */
export interface AuthOptions {
  /** The project's JWT secret, for HS256 tokens (Supabase's legacy symmetric signing). */
  readonly jwtSecret?: string;
  /**
   * A JWKS URL for asymmetric tokens (RS256, ES256, EdDSA), e.g.
   * `https://<project>.supabase.co/auth/v1/.well-known/jwks.json`.
   */
  readonly jwksUrl?: string;
  /** Accepted `aud` values. @defaultValue `'authenticated'` (Supabase's signed-in users) */
  readonly audience?: string | readonly string[];
  /** Accepted `iss` values; unchecked when omitted (e.g. `https://<project>.supabase.co/auth/v1`). */
  readonly issuer?: string | readonly string[];
  /** Seconds of clock skew tolerated on `exp`/`nbf`. @defaultValue 5 */
  readonly clockToleranceSec?: number;
}

/** A verified token. */
export interface VerifiedToken {
  /** The user: the token's `sub`, never anything the client says. */
  readonly userId: string;
  /** When the token expires (epoch ms). */
  readonly expiresAtMs: number;
  readonly claims: Readonly<JWTPayload>;
}

/** A token was refused; `message` says why, safe to send to the client. */
export class TokenRejectedError extends Error {
  override readonly name = 'TokenRejectedError';
}

const ASYMMETRIC = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'EdDSA']);

/**
 * Verifies Supabase access tokens with jose: HS256 with the project's secret and/or asymmetric algorithms with
 * the project's JWKS. Requires `sub` and `exp`.
 */
export class TokenVerifier {
  readonly #secret: Uint8Array | undefined;
  readonly #jwks: JWTVerifyGetKey | undefined;
  readonly #audience: string | string[];
  readonly #issuer: string | string[] | undefined;
  readonly #tolerance: number;

  constructor(options: AuthOptions) {
    if (!options.jwtSecret && !options.jwksUrl) {
      throw new Error(
        'The matchmaking server needs a way to verify access tokens: set auth.jwtSecret (the project JWT secret, env SUPABASE_JWT_SECRET) or auth.jwksUrl (env MATCHMAKER_JWKS_URL).',
      );
    }
    this.#secret = options.jwtSecret ? new TextEncoder().encode(options.jwtSecret) : undefined;
    this.#jwks = options.jwksUrl ? createRemoteJWKSet(new URL(options.jwksUrl)) : undefined;
    const audience = options.audience ?? 'authenticated';
    this.#audience = typeof audience === 'string' ? audience : [...audience];
    const issuer = options.issuer;
    this.#issuer = issuer === undefined ? undefined : typeof issuer === 'string' ? issuer : [...issuer];
    this.#tolerance = options.clockToleranceSec ?? 5;
  }

  /** Verify `token`; throws {@link TokenRejectedError}. */
  async verify(token: string): Promise<VerifiedToken> {
    const secret = this.#secret;
    const jwks = this.#jwks;
    const getKey: JWTVerifyGetKey = async (header, input) => {
      if (header.alg === 'HS256' && secret) return secret;
      if (header.alg !== undefined && ASYMMETRIC.has(header.alg) && jwks) return jwks(header, input);
      throw new TokenRejectedError(
        `Tokens signed with ${header.alg ?? 'no algorithm'} are not accepted here.`,
      );
    };
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, getKey, {
        audience: this.#audience,
        ...(this.#issuer === undefined ? {} : { issuer: this.#issuer }),
        clockTolerance: this.#tolerance,
        requiredClaims: ['sub', 'exp'],
      }));
    } catch (error) {
      throw toRejection(error);
    }
    if (typeof payload.sub !== 'string' || payload.sub.length === 0 || payload.sub.length > 256) {
      throw new TokenRejectedError(
        'The token has no usable `sub` (user id); sign in and use the session access token.',
      );
    }
    return { userId: payload.sub, expiresAtMs: (payload.exp ?? 0) * 1000, claims: payload };
  }
}

function toRejection(error: unknown): TokenRejectedError {
  if (error instanceof TokenRejectedError) return error;
  if (error instanceof errors.JWTExpired)
    return new TokenRejectedError('The access token has expired; refresh the session.');
  if (error instanceof errors.JWTClaimValidationFailed) {
    return new TokenRejectedError(
      `The access token's \`${error.claim}\` claim is not accepted (${error.reason}).`,
    );
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return new TokenRejectedError('The access token signature is invalid.');
  }
  if (error instanceof errors.JWKSNoMatchingKey) {
    return new TokenRejectedError('No key of the configured JWKS matches the access token.');
  }
  if (error instanceof errors.JOSEError)
    return new TokenRejectedError(`The access token was refused (${error.code}).`);
  return new TokenRejectedError('The access token could not be verified.');
}
