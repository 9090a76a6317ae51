// @vitest-environment happy-dom
import type { MatchForUser } from 'supabase-matchmaker';
import type { LocalSupabase } from 'supabase-matchmaker/testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type FindBuddyWidget, mountFindBuddy } from '../../examples/presence/findBuddy';
import { signedInClient, startQueueStack } from '../helpers/queueStack';
import { waitFor } from '../helpers/waitFor';

let stack: LocalSupabase;

beforeAll(async () => {
  // The local stack with the shipped migrations; the presence tiers need no criteria declared in SQL.
  stack = await startQueueStack();
});
afterAll(async () => {
  await stack?.stop();
});

function section(name: string): HTMLElement {
  const element = document.createElement('section');
  element.setAttribute('aria-label', name);
  document.body.append(element);
  return element;
}

const button = (root: HTMLElement) => root.querySelector('button') as HTMLButtonElement;
const status = (root: HTMLElement) => root.querySelector('[role="status"]')?.textContent ?? '';

describe('examples/presence/findBuddy on the local stack (sharded presence, unmodified supabase-js)', () => {
  it('two mounted widgets find each other: each shows the other and both get the same match, exactly once', async () => {
    const alice = await signedInClient(stack);
    const bob = await signedInClient(stack);
    const onAlice = vi.fn<(match: MatchForUser) => void>();
    const onBob = vi.fn<(match: MatchForUser) => void>();
    const aliceRoot = section('alice');
    const bobRoot = section('bob');
    const widgets: FindBuddyWidget[] = [];
    try {
      // 4 shards: the two start in random shards, so they often have to meet through a move (rotateAfterMs).
      widgets.push(
        mountFindBuddy(aliceRoot, {
          supabase: alice.supabase,
          criteria: { language: 'en' },
          shards: 4,
          onMatched: onAlice,
        }),
      );
      widgets.push(
        mountFindBuddy(bobRoot, {
          supabase: bob.supabase,
          criteria: { language: 'en' },
          shards: 4,
          onMatched: onBob,
        }),
      );
      expect(button(aliceRoot).textContent).toBe('Find a buddy');

      button(aliceRoot).click();
      await waitFor(() => status(aliceRoot) === 'Searching…', 'alice searching', { timeoutMs: 15_000 });
      expect(button(aliceRoot).textContent).toBe('Cancel');
      button(bobRoot).click();

      await waitFor(() => status(aliceRoot) === `Matched with ${bob.userId}`, 'alice matched', {
        timeoutMs: 30_000,
      });
      await waitFor(() => status(bobRoot) === `Matched with ${alice.userId}`, 'bob matched', {
        timeoutMs: 30_000,
      });

      expect(onAlice).toHaveBeenCalledTimes(1);
      expect(onBob).toHaveBeenCalledTimes(1);
      const aliceMatch = onAlice.mock.calls[0]?.[0];
      const bobMatch = onBob.mock.calls[0]?.[0];
      expect(aliceMatch?.matchId).toBe(bobMatch?.matchId);
      expect(aliceMatch?.strategy).toBe('sharded-presence');
      expect(aliceMatch?.partnerId).toBe(bob.userId);
      expect(bobMatch?.partnerId).toBe(alice.userId);

      // The database recorded one match for the two, and both searches ended as matched.
      const matches = await stack.db.query(
        `select id::text from matchmaker.matches
          where (user_a, user_b) in (($1::uuid, $2::uuid), ($2::uuid, $1::uuid))`,
        [alice.userId, bob.userId],
      );
      expect(matches.rows).toEqual([{ id: aliceMatch?.matchId }]);
      const searches = await stack.db.query(
        'select status, count(*)::int as n from matchmaker.presence_searches where user_id = any($1::uuid[]) group by status',
        [[alice.userId, bob.userId]],
      );
      expect(searches.rows).toEqual([{ status: 'matched', n: 2 }]);
    } finally {
      for (const widget of widgets) await widget.destroy();
      await Promise.all([alice.disconnect(), bob.disconnect()]);
    }
    expect(aliceRoot.childElementCount).toBe(0);
    expect(widgets[0]?.matchmaker.getSnapshot().status).toBe('closed');
  });

  it('destroy() while searching withdraws the search in the database', async () => {
    const carol = await signedInClient(stack);
    const root = section('carol');
    const widget = mountFindBuddy(root, {
      supabase: carol.supabase,
      criteria: { language: 'fr' },
      shards: 4,
    });
    const open = async () =>
      (
        await stack.db.query(
          `select count(*)::int as n from matchmaker.presence_searches where user_id = $1 and status = 'searching'`,
          [carol.userId],
        )
      ).rows[0].n as number;
    try {
      button(root).click();
      await waitFor(() => status(root) === 'Searching…', 'carol searching', { timeoutMs: 15_000 });
      await waitFor(async () => (await open()) === 1, "carol's open search row", { timeoutMs: 15_000 });
    } finally {
      await widget.destroy();
      await carol.disconnect();
    }
    expect(await open()).toBe(0);
  });
});
