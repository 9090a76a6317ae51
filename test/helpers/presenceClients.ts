import type { SupabaseClient } from '@supabase/supabase-js';
import {
  type CancelOutcome,
  Matchmaker,
  type MatchmakerOptions,
  type MatchmakingStrategy,
  type SearchInfo,
  type StrategyListener,
} from '../../src/index';
import type { LocalSupabase } from '../../src/testing/index';
import { createSupabaseClient } from './supabaseClient';

/** A strategy that also disconnects its own supabase-js client on close, so leak checks see only our handles. */
export class OwningStrategy<TStrategy extends MatchmakingStrategy> implements MatchmakingStrategy {
  readonly kind: MatchmakingStrategy['kind'];
  constructor(
    readonly inner: TStrategy,
    private readonly disconnect: () => Promise<void>,
  ) {
    this.kind = inner.kind;
  }
  search(search: SearchInfo, listener: StrategyListener) {
    return this.inner.search(search, listener);
  }
  cancel(searchId: string): Promise<CancelOutcome> {
    return this.inner.cancel(searchId);
  }
  async close() {
    await this.inner.close();
    await this.disconnect();
  }
}

/** A signed-in supabase-js client for `userId` on the stack. */
export async function clientFor(stack: LocalSupabase, userId: string): Promise<SupabaseClient> {
  const token = await stack.signToken({ sub: userId, role: 'authenticated', aud: 'authenticated' });
  return createSupabaseClient(stack, { accessToken: token });
}

/** Fully disconnects a supabase-js client (channels, then the socket). */
export async function disconnectClient(supabase: SupabaseClient): Promise<void> {
  await supabase.removeAllChannels();
  await supabase.realtime.disconnect();
}

/** A matchmaker for `userId` whose strategy is built by `make` over a fresh signed-in client it owns. */
export async function owningMatchmaker<TStrategy extends MatchmakingStrategy>(
  stack: LocalSupabase,
  userId: string,
  make: (supabase: SupabaseClient) => TStrategy,
  options: MatchmakerOptions = {},
): Promise<{ matchmaker: Matchmaker; strategy: TStrategy; supabase: SupabaseClient }> {
  const supabase = await clientFor(stack, userId);
  const strategy = make(supabase);
  const matchmaker = new Matchmaker(new OwningStrategy(strategy, () => disconnectClient(supabase)), options);
  return { matchmaker, strategy, supabase };
}
