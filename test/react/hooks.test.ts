// @vitest-environment happy-dom
import { act, cleanup, renderHook, waitFor } from '@testing-library/react';
import { createElement, type ReactNode } from 'react';
import { renderToString } from 'react-dom/server';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  createMatchmaker,
  isMatchmakingError,
  type Matchmaker,
  type MatchmakerSnapshot,
} from '../../src/index';
import { useMatchmaker, useMatchmakerEvent, useMatchmakerSnapshot } from '../../src/react/index';
import { MemoryMatchmakingHub } from '../../src/strategies/memory/MemoryMatchmakingHub';

afterEach(() => {
  cleanup();
});

let captured: ReturnType<typeof useMatchmaker> | undefined;

/** Renders `useMatchmaker`'s status and keeps what it returned in `captured`. */
function Probe({ create }: { create: () => Matchmaker }): ReactNode {
  captured = useMatchmaker(create);
  return createElement('p', null, captured.snapshot.status);
}

describe('useMatchmakerSnapshot', () => {
  it('re-renders through every state of a search, in order', async () => {
    const hub = new MemoryMatchmakingHub();
    const alice = createMatchmaker({ strategy: 'memory', hub, userId: 'alice' });
    const bob = createMatchmaker({ strategy: 'memory', hub, userId: 'bob' });
    const seen: MatchmakerSnapshot['status'][] = [];
    const { result } = renderHook(() => {
      const snapshot = useMatchmakerSnapshot(alice);
      seen.push(snapshot.status);
      return snapshot;
    });
    expect(result.current.status).toBe('idle');

    await act(() => alice.start());
    expect(result.current.status).toBe('searching');
    await act(() => bob.start());
    await waitFor(() => expect(result.current.status).toBe('matched'));
    const matched = result.current;
    expect(matched.status === 'matched' && matched.match.partnerId).toBe('bob');
    // Every rendered status is one the store went through, in the store's order (React may skip some).
    const order = ['idle', 'starting', 'searching', 'matched'];
    const indices = [...new Set(seen)].map((status) => order.indexOf(status));
    expect(indices).toEqual([...indices].sort((a, b) => a - b));
    expect(indices).not.toContain(-1);
    await Promise.all([alice.close(), bob.close()]);
  });

  it('reads undefined as idle', () => {
    const { result } = renderHook(() => useMatchmakerSnapshot(undefined));
    expect(result.current).toEqual({ status: 'idle' });
  });
});

describe('useMatchmakerEvent', () => {
  it('calls the latest listener and subscribes once per matchmaker, not per render', async () => {
    const hub = new MemoryMatchmakingHub();
    const alice = createMatchmaker({ strategy: 'memory', hub, userId: 'alice' });
    const bob = createMatchmaker({ strategy: 'memory', hub, userId: 'bob' });
    const on = vi.spyOn(alice, 'on');
    const first = vi.fn();
    const second = vi.fn();
    const { rerender, unmount } = renderHook(
      ({ listener }: { listener: () => void }) => useMatchmakerEvent(alice, 'matched', listener),
      { initialProps: { listener: first } },
    );
    rerender({ listener: second });
    rerender({ listener: second });
    expect(on).toHaveBeenCalledTimes(1);

    await act(async () => {
      await alice.start();
      await bob.start();
    });
    await waitFor(() => expect(second).toHaveBeenCalledTimes(1));
    expect(first).not.toHaveBeenCalled();
    expect(second.mock.calls[0]?.[0]).toMatchObject({ type: 'matched', match: { partnerId: 'bob' } });

    unmount();
    await act(async () => {
      await alice.start();
      await bob.start();
    });
    await waitFor(() => expect(alice.getSnapshot().status).toBe('matched'));
    expect(second).toHaveBeenCalledTimes(1);
    await Promise.all([alice.close(), bob.close()]);
  });
});

describe('useMatchmaker', () => {
  it('creates the matchmaker in an effect, searches, and on unmount closes it: the search ends with cancelled (closed)', async () => {
    const hub = new MemoryMatchmakingHub();
    let created: Matchmaker | undefined;
    const cancelled = vi.fn();
    const { result, unmount } = renderHook(() =>
      useMatchmaker(() => {
        created = createMatchmaker({ strategy: 'memory', hub, userId: 'alice' });
        created.on('cancelled', cancelled);
        return created;
      }),
    );
    await waitFor(() => expect(result.current.matchmaker).toBeDefined());
    expect(result.current.matchmaker).toBe(created);
    expect(result.current.snapshot.status).toBe('idle');

    await act(() => result.current.start({ criteria: { language: 'en' } }));
    expect(result.current.snapshot.status).toBe('searching');

    unmount();
    await waitFor(() => expect(created?.getSnapshot().status).toBe('closed'));
    expect(cancelled).toHaveBeenCalledWith(expect.objectContaining({ reason: 'closed' }));

    // The closed search is gone from the hub: a newcomer waits instead of matching the unmounted user.
    const bob = createMatchmaker({ strategy: 'memory', hub, userId: 'bob' });
    await bob.start({ criteria: { language: 'en' } });
    expect(bob.getSnapshot().status).toBe('searching');
    await bob.close();
  });

  it('under Strict Mode closes the first matchmaker and keeps exactly one open', async () => {
    const hub = new MemoryMatchmakingHub();
    const all: Matchmaker[] = [];
    const { result, unmount } = renderHook(
      () =>
        useMatchmaker(() => {
          const matchmaker = createMatchmaker({ strategy: 'memory', hub, userId: `u${all.length}` });
          all.push(matchmaker);
          return matchmaker;
        }),
      { reactStrictMode: true },
    );
    await waitFor(() => expect(result.current.matchmaker).toBeDefined());
    expect(all).toHaveLength(2);
    await waitFor(() => expect(all[0]?.getSnapshot().status).toBe('closed'));
    expect(result.current.matchmaker).toBe(all[1]);
    expect(all[1]?.getSnapshot().status).toBe('idle');
    unmount();
    await waitFor(() => expect(all[1]?.getSnapshot().status).toBe('closed'));
  });

  it('replaces the matchmaker when deps change, closing the previous one', async () => {
    const hub = new MemoryMatchmakingHub();
    const { result, rerender, unmount } = renderHook(
      ({ userId }: { userId: string }) =>
        useMatchmaker(() => createMatchmaker({ strategy: 'memory', hub, userId }), [userId]),
      { initialProps: { userId: 'alice' } },
    );
    await waitFor(() => expect(result.current.matchmaker).toBeDefined());
    const first = result.current.matchmaker;
    await act(() => result.current.start());

    rerender({ userId: 'bob' });
    await waitFor(() => expect(result.current.matchmaker).not.toBe(first));
    await waitFor(() => expect(first?.getSnapshot().status).toBe('closed'));
    // The new matchmaker's state is read, not the old one's.
    expect(result.current.snapshot.status).toBe('idle');
    unmount();
  });

  it('renders idle on the server without creating anything; start() then rejects with a typed error', () => {
    const create = vi.fn(() =>
      createMatchmaker({ strategy: 'memory', hub: new MemoryMatchmakingHub(), userId: 'a' }),
    );
    expect(renderToString(createElement(Probe, { create }))).toBe('<p>idle</p>');
    expect(create).not.toHaveBeenCalled();
    expect(captured?.matchmaker).toBeUndefined();
    return Promise.all([
      expect(captured?.start()).rejects.toSatisfy(
        (error: unknown) => isMatchmakingError(error) && error.code === 'closed',
      ),
      expect(captured?.cancel()).resolves.toBe(false),
    ]);
  });
});
