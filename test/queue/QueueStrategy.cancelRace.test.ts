import type { SupabaseClient } from '@supabase/supabase-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Matchmaker, type QueueNotifyMode, QueueStrategy } from '../../src/index';
import type { RealtimeChannelLike, SupabaseLike } from '../../src/strategies/supabaseLike';
import type { LocalSupabase } from '../../src/testing/index';
import { recordEvents } from '../conformance/suite';
import { startQueueStack } from '../helpers/queueStack';
import { createSupabaseClient } from '../helpers/supabaseClient';
import { waitFor } from '../helpers/waitFor';

/**
 * The server tells the user about a cancellation twice: in the answer of the cancel RPC, and as a notification
 * (a Broadcast to the user's topic, or the `ticket_history` row over `postgres_changes`). The two travel on
 * different connections, so the notification can arrive first. These tests make it arrive first every time: the
 * client below holds the cancel RPC's answer until the channel has delivered a notification to the strategy.
 * Before the fix, the strategy reported that notification as an ending of its own, so `cancel()` resolved
 * `false` (as if the match had won) and a restart was reported as reason `user` instead of `superseded`.
 */

let stack: LocalSupabase;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  stack = await startQueueStack();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(async () => {
  await stack?.stop();
});

/**
 * Unmodified supabase-js underneath; `rpc('matchmaker_cancel')` answers only after one of the channel callbacks
 * the strategy registered has run (at most 3 s later, so that a build that no longer gets the notification
 * still finishes).
 */
function notificationFirst(supabase: SupabaseClient): {
  client: SupabaseLike;
  notificationFirst: () => number;
  ready: () => boolean;
  subscribed: () => boolean;
} {
  let delivered = 0;
  /** Cancel answers held back until a notification had been delivered (not released by the fallback). */
  let released = 0;
  let subscribed = false;
  let systemOk = false;
  let wake: (() => void) | undefined;
  const client: SupabaseLike = {
    channel(name, options) {
      const channel = supabase.channel(name, options) as unknown as RealtimeChannelLike;
      const on = channel.on.bind(channel) as (...args: unknown[]) => RealtimeChannelLike;
      (channel as { on: unknown }).on = (
        type: string,
        filter: unknown,
        callback: (payload: unknown) => void,
      ) =>
        on(type, filter, (payload: unknown) => {
          callback(payload);
          if (type === 'system') {
            systemOk ||= (payload as { status?: string }).status === 'ok';
          } else {
            delivered += 1;
            wake?.();
          }
        });
      const subscribe = channel.subscribe.bind(channel);
      (channel as { subscribe: unknown }).subscribe = (callback?: (status: string, error?: Error) => void) =>
        subscribe((status: string, error?: Error) => {
          if (status === 'SUBSCRIBED') subscribed = true;
          callback?.(status, error);
        });
      return channel;
    },
    removeChannel: (channel) => supabase.removeChannel(channel as never),
    async rpc(fn, args) {
      const before = delivered;
      const answer = await supabase.rpc(fn, args);
      if (fn === 'matchmaker_cancel') {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 3_000);
          wake = () => {
            if (delivered > before) {
              clearTimeout(timer);
              released += 1;
              resolve();
            }
          };
          wake();
        });
        wake = undefined;
      }
      return answer;
    },
  };
  return {
    client,
    notificationFirst: () => released,
    ready: () => subscribed && systemOk,
    subscribed: () => subscribed,
  };
}

async function searchingUser(notify: QueueNotifyMode) {
  const user = await stack.createUser();
  const supabase = createSupabaseClient(stack, { accessToken: user.accessToken });
  const observed = notificationFirst(supabase);
  const matchmaker = new Matchmaker(new QueueStrategy({ supabase: observed.client, notify }));
  cleanups.push(async () => {
    await matchmaker.close();
    await supabase.removeAllChannels();
    await supabase.realtime.disconnect();
  });
  const events = recordEvents(matchmaker);
  await matchmaker.start();
  // Subscribed (for postgres_changes: the server said "Subscribed to PostgreSQL"), so the cancellation's
  // notification will reach this client.
  await waitFor(() => observed.ready() || (notify === 'broadcast' && observed.subscribed()), 'subscribed');
  return { matchmaker, events, notificationFirst: observed.notificationFirst };
}

describe.each(['broadcast', 'postgres_changes'] as const)(
  'QueueStrategy (%s): cancel answered after its notification',
  (notify) => {
    it('cancel() resolves true, with one cancelled event of reason user', async () => {
      const alice = await searchingUser(notify);
      expect(await alice.matchmaker.cancel()).toBe(true);
      expect(alice.notificationFirst()).toBe(1); // the notification did come first
      expect(alice.matchmaker.getSnapshot()).toMatchObject({ status: 'cancelled', reason: 'user' });
      const cancelled = alice.events.filter((e) => e.type === 'cancelled');
      expect(cancelled).toHaveLength(1);
      expect(cancelled[0]).toMatchObject({ reason: 'user' });
    });

    it('a restart reports the first search as superseded, not cancelled by the user', async () => {
      const alice = await searchingUser(notify);
      const first = alice.matchmaker.getSnapshot();
      await alice.matchmaker.start({ restart: true });
      expect(alice.notificationFirst()).toBe(1); // the notification did come first
      const cancelled = alice.events.filter((e) => e.type === 'cancelled');
      expect(cancelled).toHaveLength(1);
      expect(cancelled[0]).toMatchObject({ reason: 'superseded' });
      expect(
        first.status === 'searching' && cancelled[0]?.type === 'cancelled' && cancelled[0].search.searchId,
      ).toBe(first.status === 'searching' ? first.search.searchId : 'no first search');
      expect(alice.matchmaker.getSnapshot().status).toBe('searching');
    });
  },
);
