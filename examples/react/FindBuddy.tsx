/**
 * A complete "find a buddy" button for a React app on the queue tier, in about forty lines.
 *
 * The component owns its matchmaker (`useMatchmaker` creates it after mounting and closes it on unmount, so
 * leaving the page withdraws the search), renders from the snapshot, and reacts to the `matched` event.
 * The searches carry a `language` criterion, which the host declares once in SQL:
 * `update matchmaker.settings set criteria_keys = '[{"key":"language"}]'` (docs/queue.md).
 * `test/react/FindBuddy.stack.test.tsx` renders two of them against the local Supabase-compatible stack with
 * unmodified supabase-js clients and clicks through a real match.
 */
import type { SupabaseClient } from '@supabase/supabase-js';
import { createMatchmaker, type MatchForUser } from 'supabase-matchmaker';
import { useMatchmaker, useMatchmakerEvent } from 'supabase-matchmaker/react';

export interface FindBuddyProps {
  /** A signed-in supabase-js client. */
  readonly supabase: SupabaseClient;
  /** Only people with the same language are matched. */
  readonly language: string;
  /** Called once per match, e.g. to open the chat. */
  readonly onMatched?: (match: MatchForUser) => void;
}

export function FindBuddy({ supabase, language, onMatched }: FindBuddyProps) {
  const { matchmaker, snapshot, start, cancel } = useMatchmaker(
    () => createMatchmaker({ strategy: 'queue', supabase, searchTimeoutMs: 120_000 }),
    [supabase],
  );
  useMatchmakerEvent(matchmaker, 'matched', ({ match }) => onMatched?.(match));

  switch (snapshot.status) {
    case 'starting':
    case 'searching':
      return (
        <button type="button" onClick={() => void cancel()}>
          Searching… (cancel)
        </button>
      );
    case 'matched':
      return <p role="status">Matched with {snapshot.match.partnerId}</p>;
    default:
      return (
        <div>
          {snapshot.status === 'cancelled' && <p role="status">Search ended: {snapshot.reason}</p>}
          {snapshot.status === 'error' && <p role="alert">{snapshot.error.message}</p>}
          {/* A refused start() also shows in the snapshot (status 'error'), so its rejection needs no handler. */}
          <button
            type="button"
            disabled={!matchmaker}
            onClick={() => start({ criteria: { language } }).catch(() => {})}
          >
            Find a buddy
          </button>
        </div>
      );
  }
}
