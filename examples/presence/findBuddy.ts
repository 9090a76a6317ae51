/**
 * A "find a buddy" widget on the sharded presence tier, with no framework: plain DOM, one module.
 *
 * `mountFindBuddy(container, { supabase, criteria })` renders a button and a status line into `container`, runs
 * one search per click, and calls `onMatched` once per match. It renders from the matchmaker's snapshot (the
 * same `subscribe` / `getSnapshot` store React's `useSyncExternalStore` reads), so every state, including a
 * refused `start()`, shows without extra error handling. `destroy()` closes the matchmaker, which withdraws a
 * running search (reason `closed`) and leaves the presence channel.
 *
 * The presence tiers need the shipped migrations and a signed-in user; no criteria have to be declared in SQL
 * (unlike the queue tier). See docs/presence.md. `test/examples/presenceFindBuddy.stack.test.ts` mounts two of
 * these against the local Supabase-compatible stack with unmodified supabase-js clients and clicks through a
 * real match.
 */
import type { SupabaseClient } from '@supabase/supabase-js';
import {
  createMatchmaker,
  type MatchForUser,
  type Matchmaker,
  type MatchmakerSnapshot,
  type SearchCriteria,
} from 'supabase-matchmaker';

export interface FindBuddyOptions {
  /** A supabase-js client signed in as the user. */
  readonly supabase: SupabaseClient;
  /** Only people with equal criteria are matched. @defaultValue `{}` (anyone) */
  readonly criteria?: SearchCriteria;
  /** Shard channels; every client of the app must use the same number. @defaultValue 50 (the SDK's default) */
  readonly shards?: number;
  /** Called once per match, e.g. to open the chat. */
  readonly onMatched?: (match: MatchForUser) => void;
  /** Called with the quota guard's warnings (`quota_presence_rate`, ...), e.g. to log them. */
  readonly onWarning?: (code: string, message: string) => void;
}

export interface FindBuddyWidget {
  readonly matchmaker: Matchmaker;
  /** Closes the matchmaker and empties the container. */
  destroy(): Promise<void>;
}

function label(snapshot: MatchmakerSnapshot): string {
  switch (snapshot.status) {
    case 'idle':
      return '';
    case 'starting':
    case 'searching':
      return 'Searching…';
    case 'matched':
      return `Matched with ${snapshot.match.partnerId}`;
    case 'cancelled':
      return `Search ended: ${snapshot.reason}`;
    case 'error':
      return snapshot.error.message;
    case 'closed':
      return 'Closed';
  }
}

export function mountFindBuddy(container: HTMLElement, options: FindBuddyOptions): FindBuddyWidget {
  const matchmaker = createMatchmaker({
    strategy: 'sharded-presence',
    supabase: options.supabase,
    shards: options.shards,
    // Warn before the project's Realtime quotas (Free plan) are reached; see docs/presence-capacity.md.
    quota: 'free',
    searchTimeoutMs: 120_000,
  });

  const doc = container.ownerDocument;
  const button = doc.createElement('button');
  button.type = 'button';
  const status = doc.createElement('p');
  status.setAttribute('role', 'status');
  container.replaceChildren(button, status);

  const render = () => {
    const snapshot = matchmaker.getSnapshot();
    const busy = snapshot.status === 'starting' || snapshot.status === 'searching';
    button.textContent = busy ? 'Cancel' : 'Find a buddy';
    button.disabled = snapshot.status === 'closed';
    status.textContent = label(snapshot);
  };

  button.addEventListener('click', () => {
    const { status: current } = matchmaker.getSnapshot();
    if (current === 'starting' || current === 'searching') void matchmaker.cancel();
    // A refused start() also lands in the snapshot (status 'error'), so its rejection needs no handler here.
    else matchmaker.start({ criteria: options.criteria ?? {} }).catch(() => {});
  });

  const unsubscribe = matchmaker.subscribe(render);
  const offMatched = matchmaker.on('matched', ({ match }) => options.onMatched?.(match));
  const offWarning = matchmaker.on('warning', ({ code, message }) => options.onWarning?.(code, message));
  render();

  return {
    matchmaker,
    async destroy() {
      offMatched();
      offWarning();
      await matchmaker.close();
      unsubscribe();
      container.replaceChildren();
    },
  };
}
