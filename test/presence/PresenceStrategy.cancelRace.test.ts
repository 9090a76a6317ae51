import type { SupabaseClient } from '@supabase/supabase-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Matchmaker, PresenceStrategy, ShardedPresenceStrategy } from '../../src/index';
import type { SupabaseLike } from '../../src/strategies/supabaseLike';
import type { LocalSupabase } from '../../src/testing/index';
import { recordEvents } from '../conformance/suite';
import { clientFor, disconnectClient } from '../helpers/presenceClients';
import { startQueueStack } from '../helpers/queueStack';

/**
 * Ending a presence search notifies the user's private topic, and the strategy checks every notification with the
 * state RPC. That check can answer before the end RPC itself does. Before the fix, the strategy reported the
 * ending it read there as an ending of its own: `cancel()` resolved `false` and a restart was reported as
 * cancelled by the user instead of `superseded` (seen as an intermittent conformance failure on a loaded box).
 * The client below makes it happen every time: it holds the answer of `matchmaker_presence_end` until a
 * `matchmaker_presence_state` call made after it has been answered (at most 3 s, so a build that no longer
 * reconciles still finishes).
 */

let stack: LocalSupabase;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  stack = await startQueueStack();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});
afterAll(async () => {
  await stack?.stop();
});

function stateFirst(supabase: SupabaseClient): { client: SupabaseLike; held: () => number } {
  let states = 0;
  let held = 0;
  let wake: (() => void) | undefined;
  const client: SupabaseLike = {
    channel: (name, options) => supabase.channel(name, options) as never,
    removeChannel: (channel) => supabase.removeChannel(channel as never),
    async rpc(fn, args) {
      const before = states;
      const answer = await supabase.rpc(fn, args);
      if (fn === 'matchmaker_presence_state') {
        states += 1;
        wake?.();
      }
      if (fn === 'matchmaker_presence_end') {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 3_000);
          wake = () => {
            if (states > before) {
              clearTimeout(timer);
              held += 1;
              resolve();
            }
          };
        });
        wake = undefined;
      }
      return answer;
    },
  };
  return { client, held: () => held };
}

async function searching(tier: 'presence' | 'sharded-presence') {
  const user = await stack.createUser();
  const supabase = await clientFor(stack, user.id);
  const observed = stateFirst(supabase);
  const strategy =
    tier === 'presence'
      ? new PresenceStrategy({ supabase: observed.client, channel: `cancel-race-${user.id}` })
      : new ShardedPresenceStrategy({
          supabase: observed.client,
          shards: 2,
          channelPrefix: `cancel-race-${user.id}`,
        });
  const matchmaker = new Matchmaker(strategy);
  cleanups.push(async () => {
    await matchmaker.close();
    await disconnectClient(supabase);
  });
  const events = recordEvents(matchmaker);
  await matchmaker.start();
  return { matchmaker, events, held: observed.held };
}

describe.each(['presence', 'sharded-presence'] as const)(
  '%s: the end answered after a state check',
  (tier) => {
    it('cancel() resolves true, with one cancelled event of reason user', async () => {
      const alice = await searching(tier);
      expect(await alice.matchmaker.cancel()).toBe(true);
      expect(alice.held()).toBe(1); // the state check did answer first
      const cancelled = alice.events.filter((e) => e.type === 'cancelled');
      expect(cancelled).toHaveLength(1);
      expect(cancelled[0]).toMatchObject({ reason: 'user' });
    });

    it('a restart reports the first search as superseded', async () => {
      const alice = await searching(tier);
      await alice.matchmaker.start({ restart: true });
      expect(alice.held()).toBe(1);
      const cancelled = alice.events.filter((e) => e.type === 'cancelled');
      expect(cancelled).toHaveLength(1);
      expect(cancelled[0]).toMatchObject({ reason: 'superseded' });
      expect(alice.matchmaker.getSnapshot().status).toBe('searching');
    });
  },
);
