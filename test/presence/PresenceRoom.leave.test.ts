import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveEnvironment } from '../../src/core/environment';
import type { SupabaseLike } from '../../src/index';
import { PresenceRoom, type PresenceRoomHandlers } from '../../src/strategies/presence/PresenceRoom';
import type { LocalSupabase } from '../../src/testing/index';
import { signedInClient, startQueueStack } from '../helpers/queueStack';

let stack: LocalSupabase;
beforeAll(async () => {
  stack = await startQueueStack();
});
afterAll(async () => {
  await stack?.stop();
});

/** A room on a fresh signed-in client, and every stop it reported to its owner. */
async function joinedRoom(name: string) {
  const client = await signedInClient(stack);
  const stops: string[] = [];
  const noop = () => undefined;
  const handlers: PresenceRoomHandlers = {
    joined: noop,
    leaving: noop,
    subscribed: noop,
    interrupted: noop,
    stopped: (_room, message) => stops.push(message),
    hint: noop,
    warn: noop,
  };
  const room = new PresenceRoom(
    client.supabase as unknown as SupabaseLike,
    name,
    undefined,
    handlers,
    resolveEnvironment(),
  );
  room.open();
  await room.ready(0);
  return { client, room, stops };
}

describe('PresenceRoom.leave', () => {
  // supabase-js reports CLOSED synchronously inside removeChannel: our own leave is not a server stop.
  it('does not report a server stop when it leaves a channel it has not tracked in', async () => {
    const { client, room, stops } = await joinedRoom(`room-leave-untracked-${Date.now()}`);
    try {
      await room.leave();
      expect(room.closed).toBe(true);
      expect(stops).toEqual([]);
    } finally {
      await client.disconnect();
    }
  });

  it('does not report a server stop when it leaves without untracking (presence window used up)', async () => {
    const { client, room, stops } = await joinedRoom(`room-leave-window-${Date.now()}`);
    try {
      // 5 tracks fill the per-channel window of 5 calls in 30 s: the leave skips its untrack.
      for (let i = 0; i < 5; i += 1) await room.track({ probe: i });
      await room.leave();
      expect(room.closed).toBe(true);
      expect(stops).toEqual([]);
    } finally {
      await client.disconnect();
    }
  });

  it('does not report a server stop when it leaves after tracking', async () => {
    const { client, room, stops } = await joinedRoom(`room-leave-tracked-${Date.now()}`);
    try {
      await room.track({ probe: true });
      await room.leave();
      expect(room.closed).toBe(true);
      expect(stops).toEqual([]);
    } finally {
      await client.disconnect();
    }
  });
});
