/**
 * React bindings for supabase-matchmaker: hooks over the framework-agnostic {@link Matchmaker} store.
 *
 * `react` (18 or later) is an optional peer dependency: only this subpath imports it. The hooks hold no state of
 * their own beyond what React needs; everything comes from `Matchmaker.subscribe` / `getSnapshot` through
 * `useSyncExternalStore`, so they are safe under concurrent rendering, Strict Mode and server rendering (where the
 * snapshot is `idle`).
 *
 * @example
 * ```tsx
 * import { createMatchmaker } from 'supabase-matchmaker';
 * import { useMatchmaker } from 'supabase-matchmaker/react';
 *
 * function FindBuddy({ supabase }: { supabase: SupabaseClient }) {
 *   const { snapshot, start, cancel } = useMatchmaker(() => createMatchmaker({ strategy: 'queue', supabase }), [supabase]);
 *   if (snapshot.status === 'matched') return <Chat partnerId={snapshot.match.partnerId} />;
 *   if (snapshot.status === 'searching') return <button onClick={() => cancel()}>Stop searching</button>;
 *   return <button onClick={() => start()}>Find a buddy</button>;
 * }
 * ```
 *
 * @packageDocumentation
 */
import { type DependencyList, useCallback, useEffect, useRef, useState, useSyncExternalStore } from 'react';
import { MatchmakingError, MatchmakingErrorCode } from '../core/errors';
import type { MatchmakerEvents } from '../core/events';
import type { Matchmaker } from '../core/Matchmaker';
import type { MatchmakerSnapshot, SearchInfo, StartOptions } from '../core/types';

const IDLE: MatchmakerSnapshot = Object.freeze({ status: 'idle' });
const noSubscription = (): (() => void) => () => {};
const idleSnapshot = (): MatchmakerSnapshot => IDLE;

/**
 * The matchmaker's current snapshot; the component re-renders when it changes.
 *
 * @remarks
 * `undefined` (a matchmaker not created yet, e.g. the first render of {@link useMatchmaker}) reads as `idle`.
 * On the server the snapshot is the matchmaker's own (normally `idle`: nothing starts during rendering).
 *
 * @example
 * ```tsx
 * const snapshot = useMatchmakerSnapshot(matchmaker);
 * return <p>{snapshot.status === 'searching' ? 'Looking for a buddy…' : snapshot.status}</p>;
 * ```
 */
export function useMatchmakerSnapshot(matchmaker: Matchmaker | undefined): MatchmakerSnapshot {
  const subscribe = matchmaker ? matchmaker.subscribe : noSubscription;
  const getSnapshot = matchmaker ? matchmaker.getSnapshot : idleSnapshot;
  return useSyncExternalStore(subscribe, getSnapshot, getSnapshot);
}

/**
 * Listen to one matchmaker event for as long as the component is mounted.
 *
 * @remarks
 * The listener may be a new function on every render: the latest one is called, and the subscription is made
 * once per matchmaker (not once per render). Events that fire while `matchmaker` is `undefined` are not seen.
 *
 * @example
 * ```tsx
 * useMatchmakerEvent(matchmaker, 'matched', ({ match }) => navigate(`/chat/${match.matchId}`));
 * useMatchmakerEvent(matchmaker, 'warning', ({ code, message }) => console.warn(code, message));
 * ```
 */
export function useMatchmakerEvent<TEvent extends keyof MatchmakerEvents>(
  matchmaker: Matchmaker | undefined,
  event: TEvent,
  listener: MatchmakerEvents[TEvent],
): void {
  const latest = useRef(listener);
  useEffect(() => {
    latest.current = listener;
  });
  useEffect(() => {
    if (!matchmaker) return undefined;
    const forward = ((...args: Parameters<MatchmakerEvents[TEvent]>) =>
      (latest.current as (...a: Parameters<MatchmakerEvents[TEvent]>) => void)(
        ...args,
      )) as MatchmakerEvents[TEvent];
    return matchmaker.on(event, forward);
  }, [matchmaker, event]);
}

/** What {@link useMatchmaker} returns. */
export interface UseMatchmakerResult {
  /** The matchmaker this component owns; `undefined` before the first effect ran (and on the server). */
  readonly matchmaker: Matchmaker | undefined;
  /** Its current snapshot (`idle` while `matchmaker` is `undefined`). */
  readonly snapshot: MatchmakerSnapshot;
  /**
   * `matchmaker.start(options)`. Rejects with a `MatchmakingError` (code `closed`) when called before the
   * matchmaker exists or after the component unmounted.
   */
  readonly start: (options?: StartOptions) => Promise<SearchInfo>;
  /** `matchmaker.cancel()`; resolves `false` when there is no matchmaker. */
  readonly cancel: () => Promise<boolean>;
}

/**
 * Create a matchmaker for the lifetime of a component, and read it.
 *
 * @remarks
 * `create` runs in an effect, never during rendering, and again whenever `deps` change; the previous
 * matchmaker is closed first (its running search ends with `cancelled`, reason `closed`), and so is the last
 * one on unmount. Under React Strict Mode's mount → unmount → mount in development, the first matchmaker is
 * closed and a second one created, so nothing leaks. To share one matchmaker between components, create it
 * yourself and use {@link useMatchmakerSnapshot} / {@link useMatchmakerEvent} instead.
 *
 * @param create - Builds the matchmaker, typically `() => createMatchmaker({ strategy: 'queue', supabase })`.
 * @param deps - When these change, the matchmaker is replaced. Default: created once.
 *
 * @example
 * ```tsx
 * const { snapshot, start, cancel } = useMatchmaker(() => createMatchmaker({ strategy: 'queue', supabase }), [supabase]);
 * ```
 */
export function useMatchmaker(create: () => Matchmaker, deps: DependencyList = []): UseMatchmakerResult {
  const [matchmaker, setMatchmaker] = useState<Matchmaker | undefined>(undefined);
  const createRef = useRef(create);
  useEffect(() => {
    createRef.current = create;
  });
  useEffect(() => {
    const owned = createRef.current();
    setMatchmaker(owned);
    return () => {
      setMatchmaker((current) => (current === owned ? undefined : current));
      void owned.close();
    };
    // biome-ignore lint/correctness/useExhaustiveDependencies: `deps` is the caller's dependency list.
  }, deps);
  const snapshot = useMatchmakerSnapshot(matchmaker);
  const start = useCallback(
    async (options?: StartOptions): Promise<SearchInfo> => {
      if (!matchmaker) throw notReady();
      return matchmaker.start(options);
    },
    [matchmaker],
  );
  const cancel = useCallback(
    async (): Promise<boolean> => (matchmaker ? matchmaker.cancel() : false),
    [matchmaker],
  );
  return { matchmaker, snapshot, start, cancel };
}

/** The error `start()` rejects with when there is no matchmaker. */
function notReady(): MatchmakingError {
  return new MatchmakingError(
    MatchmakingErrorCode.Closed,
    'The matchmaker is not created yet (useMatchmaker creates it in an effect, after the first render) or the component unmounted. Call start() from an event handler or an effect.',
  );
}
