/**
 * Child-process entry that runs a share of the presence benchmark's searchers (`bench/presence.bench.ts` with
 * `BENCH_PRESENCE_CLIENT_PROCS`), so that the bench process's event loop drives only the local stack: one
 * unmodified supabase-js client + {@link Matchmaker} per searcher against the stack's URL, with a fetch gate of
 * its own (a share of the bench's 512 requests in flight).
 *
 * Protocol (IPC): options in `BENCH_PRESENCE_CLIENTS` (JSON, {@link PresenceClientsOptions}); the parent sends
 * `setup` (the searchers: index and token), the child answers `ready`; the parent sends `start` (the run's t0 as
 * epoch ms), the child starts searcher `index` at `t0 + index / n * spreadMs` and streams
 * {@link PresenceClientEvent}s in batches (with its status) until the parent sends `stop`; it then answers
 * `final`, closes every client and exits. Timestamps are `performance.timeOrigin + performance.now()` (epoch ms,
 * comparable across the processes of one machine).
 *
 * @packageDocumentation
 */
import type { PresenceStats } from '../../src/strategies/presence/PresenceEngine';
import { ShardedPresenceStrategy } from '../../src/strategies/sharded-presence/ShardedPresenceStrategy';
import {
  type ClaimBudget,
  createSearcher,
  type Design,
  epochMs,
  FetchGate,
  type Layout,
  type Searcher,
} from './presenceClients';

/** Options of the child, as JSON in `BENCH_PRESENCE_CLIENTS`. */
export interface PresenceClientsOptions {
  readonly url: string;
  readonly anonKey: string;
  readonly design: Design;
  readonly layout: Layout;
  /** This child's share of the run's race-everyone claim budget. */
  readonly claimBudget: number;
  /** This child's share of the requests in flight. */
  readonly fetchConcurrency: number;
}

/** One searcher's event. */
export type PresenceClientEvent =
  | { readonly kind: 'started'; readonly index: number; readonly at: number }
  | {
      readonly kind: 'matched';
      readonly index: number;
      readonly at: number;
      readonly matchId: string;
      readonly partnerId: string;
    }
  | { readonly kind: 'start-failed'; readonly index: number; readonly error: string };

/** Messages from the parent. */
export type PresenceClientsRequest =
  | { readonly type: 'setup'; readonly searchers: readonly { index: number; token: string }[] }
  | { readonly type: 'start'; readonly t0: number; readonly n: number; readonly spreadMs: number }
  | { readonly type: 'stop' };

/** The child's status, sent with every batch of events. */
export interface PresenceClientsStatus {
  /** Requests waiting in the child's fetch gate. */
  readonly queued: number;
  /** Race-everyone: the child's share of the claim budget is spent. */
  readonly exhausted: boolean;
}

/** Messages to the parent. */
export type PresenceClientsMessage =
  | { readonly type: 'ready' }
  | {
      readonly type: 'events';
      readonly events: readonly PresenceClientEvent[];
      readonly status: PresenceClientsStatus;
    }
  | {
      readonly type: 'final';
      readonly claims: number;
      readonly claimsLost: Record<string, number>;
      readonly moves: number;
      readonly returns: number;
      readonly fetchFailures: number;
      readonly startsPending: number;
      readonly dropped: number;
      readonly running: { count: number; oldestMs: number };
      /** Unmatched searchers of this child (at most 12): state as the client sees it. */
      readonly unmatched: readonly {
        index: number;
        status: string;
        reason: string | undefined;
        error: string | undefined;
        shard: number | undefined;
        stats: PresenceStats | undefined;
      }[];
      readonly unmatchedCount: number;
      /** CPU seconds (user + system) the child used since `start`. */
      readonly cpuSeconds: number;
      /** The first fetch failures' messages. */
      readonly fetchErrors: readonly string[];
    };

async function main(): Promise<void> {
  const send = process.send?.bind(process);
  const raw = process.env.BENCH_PRESENCE_CLIENTS;
  if (!send || !raw) throw new Error('presenceClientsChild needs an IPC channel and BENCH_PRESENCE_CLIENTS');
  const options = JSON.parse(raw) as PresenceClientsOptions;
  const post = (message: PresenceClientsMessage) => send(message);
  const gate = new FetchGate(options.fetchConcurrency);
  const budget: ClaimBudget = { remaining: options.claimBudget, exhausted: false };
  const searchers = new Map<number, Searcher>();
  const matched = new Set<number>();
  const timers: ReturnType<typeof setTimeout>[] = [];
  let events: PresenceClientEvent[] = [];
  let startsPending = 0;
  const flush = () => {
    post({ type: 'events', events, status: { queued: gate.queued, exhausted: budget.exhausted } });
    events = [];
  };
  let flusher: ReturnType<typeof setInterval> | undefined;
  let cpuAtStart = process.cpuUsage();

  process.on('message', (message: PresenceClientsRequest) => {
    if (message.type === 'setup') {
      for (const { index, token } of message.searchers) {
        const searcher = createSearcher(options, token, options.design, options.layout, budget, gate);
        searcher.matchmaker.on('matched', ({ match }) => {
          matched.add(index);
          events.push({
            kind: 'matched',
            index,
            at: epochMs(),
            matchId: match.matchId,
            partnerId: match.partnerId,
          });
        });
        searchers.set(index, searcher);
      }
      post({ type: 'ready' });
    } else if (message.type === 'start') {
      cpuAtStart = process.cpuUsage();
      startsPending = searchers.size;
      flusher = setInterval(flush, 100);
      for (const [index, searcher] of searchers) {
        const at = message.t0 + (index / message.n) * message.spreadMs;
        timers.push(
          setTimeout(
            () => {
              events.push({ kind: 'started', index, at: epochMs() });
              searcher.matchmaker.start().then(
                () => {
                  startsPending -= 1;
                },
                (error: unknown) => {
                  startsPending -= 1;
                  events.push({ kind: 'start-failed', index, error: String(error) });
                },
              );
            },
            Math.max(0, at - epochMs()),
          ),
        );
      }
    } else if (message.type === 'stop') {
      void stop();
    }
  });

  const stop = async () => {
    if (flusher) clearInterval(flusher);
    for (const timer of timers) clearTimeout(timer);
    flush();
    let claims = 0;
    let moves = 0;
    let returns = 0;
    const claimsLost: Record<string, number> = {};
    const unmatched: Extract<PresenceClientsMessage, { type: 'final' }>['unmatched'][number][] = [];
    let unmatchedCount = 0;
    for (const [index, searcher] of searchers) {
      if (searcher.ours) {
        claims += searcher.ours.stats.claims;
        moves += searcher.ours.stats.moves;
        returns += searcher.ours.stats.returns;
        for (const [reason, count] of Object.entries(searcher.ours.stats.claimsLost)) {
          claimsLost[reason] = (claimsLost[reason] ?? 0) + (count ?? 0);
        }
      }
      if (searcher.baseline) claims += searcher.baseline.claims;
      if (!matched.has(index)) {
        unmatchedCount += 1;
        if (unmatched.length < 12) {
          unmatched.push({
            index,
            status: searcher.matchmaker.getSnapshot().status,
            reason: (searcher.matchmaker.getSnapshot() as { reason?: string }).reason,
            error: (searcher.matchmaker.getSnapshot() as { error?: Error }).error?.message,
            shard: searcher.ours instanceof ShardedPresenceStrategy ? searcher.ours.shard : undefined,
            stats: searcher.ours?.stats,
          });
        }
      }
    }
    const running = gate.running;
    const dropped = gate.dropQueued();
    post({
      type: 'final',
      claims,
      claimsLost,
      moves,
      returns,
      fetchFailures: gate.failures,
      fetchErrors: gate.errors,
      startsPending,
      dropped,
      running,
      unmatched,
      unmatchedCount,
      cpuSeconds: (() => {
        const cpu = process.cpuUsage(cpuAtStart);
        return (cpu.user + cpu.system) / 1e6;
      })(),
    });
    const all = [...searchers.values()];
    await Promise.allSettled(all.map((s) => s.matchmaker.close()));
    await Promise.allSettled(
      all.map(async (s) => {
        await s.supabase.removeAllChannels();
        await s.supabase.realtime.disconnect();
      }),
    );
    process.exit(0);
  };
  process.on('disconnect', () => process.exit(0));
}

await main();
