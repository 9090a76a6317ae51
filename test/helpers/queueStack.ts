import type { SupabaseClient } from '@supabase/supabase-js';
import { applyMigrations } from '../../src/migrations/index';
import { type LocalSupabase, type LocalSupabaseOptions, startLocalSupabase } from '../../src/testing/index';
import { createSupabaseClient } from './supabaseClient';

/** A local stack with the matchmaker migrations applied. */
export async function startQueueStack(options: LocalSupabaseOptions = {}): Promise<LocalSupabase> {
  const stack = await startLocalSupabase(options);
  try {
    const session = await stack.db.connect();
    try {
      await applyMigrations(session);
    } finally {
      session.release();
    }
  } catch (error) {
    await stack.stop();
    throw error;
  }
  return stack;
}

/** A signed-in supabase-js client for a fresh user of the stack, and a function that fully disconnects it. */
export async function signedInClient(
  stack: LocalSupabase,
): Promise<{ userId: string; supabase: SupabaseClient; disconnect: () => Promise<void> }> {
  const user = await stack.createUser();
  const supabase = createSupabaseClient(stack, { accessToken: user.accessToken });
  return {
    userId: user.id,
    supabase,
    async disconnect() {
      await supabase.removeAllChannels();
      await supabase.realtime.disconnect();
    },
  };
}
