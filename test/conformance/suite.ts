import { describe, expect, it } from 'vitest';
import type { Matchmaker, MatchmakerEvent, MatchmakerSnapshot } from '../../src/index';
import { waitFor } from '../helpers/waitFor';

/** One backend under test, set up per test. */
export interface ConformanceBackend {
  /** A matchmaker acting for `userId`; several calls with the same id model several tabs of one user. */
  createMatchmaker(userId: string): Promise<Matchmaker>;
  /** A fresh user id the backend accepts. */
  newUserId(): Promise<string>;
  /** Release everything the backend itself holds (databases, servers). */
  teardown(): Promise<void>;
}

/** How a tier plugs into the suite. */
export interface ConformanceFactory {
  setup(): Promise<ConformanceBackend>;
  /** Bound for event waits; slower tiers (polling, cron) raise it. @defaultValue 15000 */
  readonly eventTimeoutMs?: number;
  /** How long to watch for a match that must NOT happen. @defaultValue 300 */
  readonly quietMs?: number;
}

/** Records every event a matchmaker emits, in order. */
export function recordEvents(matchmaker: Matchmaker): MatchmakerEvent[] {
  const events: MatchmakerEvent[] = [];
  for (const type of ['searching', 'matched', 'cancelled', 'error', 'state', 'warning'] as const) {
    matchmaker.on(type, (event: MatchmakerEvent) => events.push(event));
  }
  return events;
}

/** Counts of this process's active handles by type (sockets, timers, ...). */
function resourceCounts(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const type of process.getActiveResourcesInfo()) counts.set(type, (counts.get(type) ?? 0) + 1);
  return counts;
}

/** Resource types with more open handles now than in `baseline`. */
function leakedResources(baseline: Map<string, number>): string[] {
  const leaked: string[] = [];
  for (const [type, count] of resourceCounts()) {
    const before = baseline.get(type) ?? 0;
    if (count > before) leaked.push(`${count - before} ${type}`);
  }
  return leaked;
}

function label(event: MatchmakerEvent): string {
  return event.type === 'state' ? `state:${event.snapshot.status}` : event.type;
}

function statusIs<TStatus extends MatchmakerSnapshot['status']>(
  matchmaker: Matchmaker,
  status: TStatus,
): Extract<MatchmakerSnapshot, { status: TStatus }> | undefined {
  const snapshot = matchmaker.getSnapshot();
  return snapshot.status === status
    ? (snapshot as Extract<MatchmakerSnapshot, { status: TStatus }>)
    : undefined;
}

/**
 * The behaviour every strategy must show through the public {@link Matchmaker} API. Each tier runs it with its
 * own factory; the in-memory reference strategy defines the expected results.
 */
export function runConformanceSuite(name: string, factory: ConformanceFactory): void {
  const timeoutMs = factory.eventTimeoutMs ?? 15_000;
  const quietMs = factory.quietMs ?? 300;
  const matched = (m: Matchmaker, what: string) => waitFor(() => statusIs(m, 'matched'), what, { timeoutMs });
  const quiet = () => new Promise((resolve) => setTimeout(resolve, quietMs));

  describe(`conformance: ${name}`, () => {
    async function withBackend(run: (backend: ConformanceBackend) => Promise<void>): Promise<void> {
      const backend = await factory.setup();
      const created: Matchmaker[] = [];
      const tracked: ConformanceBackend = {
        ...backend,
        async createMatchmaker(userId) {
          const matchmaker = await backend.createMatchmaker(userId);
          created.push(matchmaker);
          return matchmaker;
        },
      };
      try {
        await run(tracked);
      } finally {
        // Even when an assertion failed: no search may outlive its test and meet the next test's users.
        await Promise.allSettled(created.map((matchmaker) => matchmaker.close()));
        await backend.teardown();
      }
    }

    it('gives both sides `matched` with the same match', () =>
      withBackend(async (backend) => {
        const [alice, bob] = [await backend.newUserId(), await backend.newUserId()];
        const a = await backend.createMatchmaker(alice);
        const b = await backend.createMatchmaker(bob);
        await a.start();
        await b.start();
        const [ma, mb] = [await matched(a, 'alice matched'), await matched(b, 'bob matched')];
        expect(ma.match.matchId).toBe(mb.match.matchId);
        expect(ma.match.partnerId).toBe(bob);
        expect(mb.match.partnerId).toBe(alice);
        expect(ma.match.userId).toBe(alice);
        expect([...ma.match.userIds].sort()).toEqual([alice, bob].sort());
        expect(ma.match.userIds).toEqual(mb.match.userIds);
        expect(ma.match.createdAt).toBe(mb.match.createdAt);
        expect(Number.isNaN(Date.parse(ma.match.createdAt))).toBe(false);
        expect(ma.match.strategy).toBe(a.strategy);
        expect(ma.match.waitedMs).toBeGreaterThanOrEqual(0);
        await Promise.all([a.close(), b.close()]);
      }));

    it('fires events in the documented order', () =>
      withBackend(async (backend) => {
        const a = await backend.createMatchmaker(await backend.newUserId());
        const b = await backend.createMatchmaker(await backend.newUserId());
        const events = recordEvents(a);
        await a.start();
        await b.start();
        await matched(a, 'alice matched');
        expect(events.map(label)).toEqual([
          'state:starting',
          'searching',
          'state:searching',
          'matched',
          'state:matched',
        ]);
        await Promise.all([a.close(), b.close()]);
      }));

    it('`cancel` gives `cancelled` (reason user) and no later match', () =>
      withBackend(async (backend) => {
        const a = await backend.createMatchmaker(await backend.newUserId());
        const events = recordEvents(a);
        await a.start();
        expect(await a.cancel()).toBe(true);
        expect(a.getSnapshot()).toMatchObject({ status: 'cancelled', reason: 'user' });
        const b = await backend.createMatchmaker(await backend.newUserId());
        await b.start();
        await quiet();
        expect(b.getSnapshot().status).toBe('searching');
        expect(events.filter((e) => e.type === 'matched')).toHaveLength(0);
        expect(events.filter((e) => e.type === 'cancelled')).toHaveLength(1);
        expect(await a.cancel()).toBe(false);
        await Promise.all([a.close(), b.close()]);
      }));

    it('`start` while searching keeps the running search (no second ticket)', () =>
      withBackend(async (backend) => {
        const a = await backend.createMatchmaker(await backend.newUserId());
        const first = await a.start();
        const [second, third] = await Promise.all([a.start(), a.start({ criteria: {} })]);
        expect(second.searchId).toBe(first.searchId);
        expect(third.searchId).toBe(first.searchId);
        const b = await backend.createMatchmaker(await backend.newUserId());
        const c = await backend.createMatchmaker(await backend.newUserId());
        await b.start();
        await matched(a, 'alice matched');
        await c.start();
        await quiet();
        // Had the double start queued two tickets, carol would have been paired with alice's second one.
        expect(c.getSnapshot().status).toBe('searching');
        await Promise.all([a.close(), b.close(), c.close()]);
      }));

    it('`start({ restart: true })` supersedes the running search', () =>
      withBackend(async (backend) => {
        const a = await backend.createMatchmaker(await backend.newUserId());
        const events = recordEvents(a);
        const first = await a.start();
        const second = await a.start({ restart: true });
        expect(second.searchId).not.toBe(first.searchId);
        expect(events.filter((e) => e.type === 'cancelled')).toMatchObject([{ reason: 'superseded' }]);
        expect(a.getSnapshot()).toMatchObject({ status: 'searching', search: { searchId: second.searchId } });
        const b = await backend.createMatchmaker(await backend.newUserId());
        await b.start();
        const m = await matched(a, 'alice matched after restart');
        expect(m.search.searchId).toBe(second.searchId);
        await Promise.all([a.close(), b.close()]);
      }));

    it('`close` mid-search ends the search (reason closed) and releases it', () =>
      withBackend(async (backend) => {
        const a = await backend.createMatchmaker(await backend.newUserId());
        const events = recordEvents(a);
        await a.start();
        await a.close();
        await a.close();
        expect(a.getSnapshot().status).toBe('closed');
        expect(events.filter((e) => e.type === 'cancelled')).toMatchObject([{ reason: 'closed' }]);
        expect(() => a.start()).toThrowError(/closed/);
        const b = await backend.createMatchmaker(await backend.newUserId());
        await b.start();
        await quiet();
        expect(b.getSnapshot().status).toBe('searching');
        await b.close();
      }));

    it('`close` releases every connection, channel and timer it opened', () =>
      withBackend(async (backend) => {
        const baseline = resourceCounts();
        const a = await backend.createMatchmaker(await backend.newUserId());
        const b = await backend.createMatchmaker(await backend.newUserId());
        await a.start();
        await b.start();
        await matched(a, 'alice matched');
        const c = await backend.createMatchmaker(await backend.newUserId());
        await c.start();
        await Promise.all([a.close(), b.close(), c.close()]);
        await waitFor(() => leakedResources(baseline).length === 0, 'handles released after close', {
          timeoutMs,
        }).catch(() => {
          throw new Error(`still open after close: ${leakedResources(baseline).join(', ')}`);
        });
      }));

    it('one user in two matchmaker instances gets one match, seen by both', () =>
      withBackend(async (backend) => {
        const alice = await backend.newUserId();
        const [a1, a2] = [await backend.createMatchmaker(alice), await backend.createMatchmaker(alice)];
        await a1.start();
        await a2.start();
        const b = await backend.createMatchmaker(await backend.newUserId());
        const c = await backend.createMatchmaker(await backend.newUserId());
        await b.start();
        const [m1, m2, mb] = [
          await matched(a1, 'tab 1 matched'),
          await matched(a2, 'tab 2 matched'),
          await matched(b, 'bob matched'),
        ];
        expect(m1.match.matchId).toBe(mb.match.matchId);
        expect(m2.match.matchId).toBe(mb.match.matchId);
        await c.start();
        await quiet();
        expect(c.getSnapshot().status).toBe('searching');
        await Promise.all([a1.close(), a2.close(), b.close(), c.close()]);
      }));

    it('a cancel in one tab ends the search in the other', () =>
      withBackend(async (backend) => {
        const alice = await backend.newUserId();
        const [a1, a2] = [await backend.createMatchmaker(alice), await backend.createMatchmaker(alice)];
        await a1.start();
        await a2.start();
        expect(await a1.cancel()).toBe(true);
        const ended = await waitFor(() => statusIs(a2, 'cancelled'), 'tab 2 cancelled', { timeoutMs });
        expect(ended.reason).toBe('user');
        await Promise.all([a1.close(), a2.close()]);
      }));

    it('cancel racing a partner: either cancelled or matched, never both', () =>
      withBackend(async (backend) => {
        for (let round = 0; round < 5; round += 1) {
          const a = await backend.createMatchmaker(await backend.newUserId());
          const b = await backend.createMatchmaker(await backend.newUserId());
          await a.start();
          const [cancelled] = await Promise.all([a.cancel(), b.start()]);
          if (cancelled) {
            expect(a.getSnapshot().status).toBe('cancelled');
            await quiet();
            expect(b.getSnapshot().status).toBe('searching');
          } else {
            await matched(a, 'alice matched (cancel lost)');
            const mb = await matched(b, 'bob matched');
            expect(mb.match.partnerId).toBe((a.getSnapshot() as { match: { userId: string } }).match.userId);
          }
          await Promise.all([a.close(), b.close()]);
        }
      }));

    it('is a store: the snapshot object changes only when the state does', () =>
      withBackend(async (backend) => {
        const a = await backend.createMatchmaker(await backend.newUserId());
        const seen: MatchmakerSnapshot[] = [];
        const unsubscribe = a.subscribe(() => seen.push(a.getSnapshot()));
        const idle = a.getSnapshot();
        expect(a.getSnapshot()).toBe(idle);
        await a.start();
        const searching = a.getSnapshot();
        expect(a.getSnapshot()).toBe(searching);
        await a.start();
        expect(a.getSnapshot()).toBe(searching);
        expect(seen.map((s) => s.status)).toEqual(['starting', 'searching']);
        unsubscribe();
        await a.cancel();
        expect(seen).toHaveLength(2);
        await a.close();
      }));
  });
}
