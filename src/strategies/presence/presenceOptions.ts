import { type Environment, resolveEnvironment } from '../../core/environment';
import { MatchmakingError, MatchmakingErrorCode } from '../../core/errors';
import type { SupabaseLike } from '../supabaseLike';
import type { PresenceEngineOptions, PresenceLayout } from './PresenceEngine';
import { type PresencePlan, QuotaGuard, type QuotaGuardOptions } from './quotaGuard';

/** Options both presence tiers accept. */
export interface PresenceCommonOptions {
  /** A Supabase client signed in as the user (its session JWT is what `auth.uid()` sees). */
  readonly supabase: SupabaseLike;
  /**
   * How long the pair a client computed must stay the same before its older member claims it. Presence diffs
   * reach clients at slightly different times, and a newcomer whose start sorts before others shifts the pairs
   * behind it; waiting out such moments is what keeps wasted claims near zero. Larger than the spread of
   * Realtime delivery plus a claim's round trip.
   * @defaultValue 200
   */
  readonly settleMs?: number;
  /**
   * Once a pair has held for half of `settleMs`, its two members stay committed to each other while both are
   * present, for at most this long, even when leaves elsewhere momentarily shift the rule's pairs: the older
   * may be claiming right now (a claim can take long on a busy network).
   * @defaultValue 5000
   */
  readonly stickyMs?: number;
  /** A present user the database says is not searching is skipped by this client for this long. @defaultValue 5000 */
  readonly staleBackoffMs?: number;
  /** `start()` fails when the presence channel has not joined after this long. @defaultValue 15000 */
  readonly joinTimeoutMs?: number;
  /**
   * Guard the project's Realtime quotas: a plan name or {@link QuotaGuardOptions}. The strategy then emits
   * `warning` events before the estimated load reaches the plan's limits, and holds or refuses new searches if
   * configured. @defaultValue no guard
   */
  readonly quota?: QuotaGuardOptions | PresencePlan;
  /** Clock, timers, logger and random source. */
  readonly environment?: Partial<Environment>;
}

function invalidConfig(message: string, field: string): MatchmakingError {
  return new MatchmakingError(MatchmakingErrorCode.InvalidConfig, message, { details: { field } });
}

/** Non-negative finite number or the default; throws an `invalid_config` error naming the field. */
export function numberOption(value: number | undefined, fallback: number, field: string, min = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw invalidConfig(`${field} must be a number >= ${min}; got ${String(value)}.`, field);
  }
  return value;
}

/** Resolves the shared options into engine options. */
export function engineOptions(
  options: PresenceCommonOptions,
  layout: PresenceLayout,
  strategyName: string,
): PresenceEngineOptions {
  const supabase = options?.supabase;
  if (!supabase || typeof supabase.rpc !== 'function' || typeof supabase.channel !== 'function') {
    throw invalidConfig(
      `strategy '${strategyName}' needs a Supabase client: pass { supabase: createClient(url, anonKey) }, signed in as the user.`,
      'supabase',
    );
  }
  const env = resolveEnvironment(options.environment);
  const scale = layout.shards ?? 1;
  return {
    supabase,
    layout,
    env,
    settleMs: numberOption(options.settleMs, 200, 'settleMs'),
    stickyMs: numberOption(options.stickyMs, 5000, 'stickyMs'),
    staleBackoffMs: numberOption(options.staleBackoffMs, 5000, 'staleBackoffMs'),
    joinTimeoutMs: numberOption(options.joinTimeoutMs, 15_000, 'joinTimeoutMs', 1),
    guard: options.quota === undefined ? undefined : new QuotaGuard(options.quota, env.clock, scale),
  };
}

/** A channel name Realtime accepts (non-empty, printable, no `realtime:` prefix). */
export function channelNameOption(value: string | undefined, fallback: string, field: string): string {
  const name = value ?? fallback;
  if (typeof name !== 'string' || name.length === 0 || name.length > 200 || name.startsWith('realtime:')) {
    throw invalidConfig(
      `${field} must be a non-empty channel name without the "realtime:" prefix, e.g. '${fallback}'; got ${JSON.stringify(value)}.`,
      field,
    );
  }
  return name;
}
