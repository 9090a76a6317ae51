/**
 * Kinds of message the local Realtime server delivers to sockets.
 * `presence_state` and `presence_diff` are also counted as presence events.
 */
export type DeliveryKind =
  | 'broadcast'
  | 'presence_state'
  | 'presence_diff'
  | 'postgres_changes'
  | 'system'
  | 'reply'
  | 'close';

/** A frozen copy of the stack's counters at one moment. */
export interface StackCountersSnapshot {
  /** Messages written to client sockets, by kind. */
  readonly delivered: Readonly<Record<DeliveryKind, number>>;
  /** Sum of `delivered`. */
  readonly deliveredTotal: number;
  /** Presence deliveries (`presence_state` + `presence_diff`), the figure Supabase's presence quota counts. */
  readonly presenceEvents: number;
  /** Track/untrack messages received from clients. */
  readonly presenceMessages: number;
  /** Broadcasts received from clients (socket and HTTP). */
  readonly broadcastsReceived: number;
  /** Channel joins accepted / refused. */
  readonly joins: number;
  readonly joinErrors: number;
  /** WebSocket connections opened over the stack's life, and currently open. */
  readonly connectionsOpened: number;
  readonly connectionsOpen: number;
  /** RPC calls through `/rest/v1/rpc`, and how many ended in an error response. */
  readonly rpcCalls: number;
  readonly rpcErrors: number;
  /**
   * RPC requests received and not yet answered (a gauge). A benchmark waits for 0 between runs: a request still
   * queued for a database connection is counted in `rpcCalls` only when it is answered, i.e. in a later run.
   */
  readonly rpcInFlight: number;
  /** RPC calls by function name. */
  readonly rpcByFunction: Readonly<Record<string, number>>;
  /** Channels stopped by a quota (system error + phx_close, or a refused join). */
  readonly quotaStops: number;
}

const DELIVERY_KINDS: readonly DeliveryKind[] = [
  'broadcast',
  'presence_state',
  'presence_diff',
  'postgres_changes',
  'system',
  'reply',
  'close',
];

/**
 * Mutable counters shared by every part of the local stack. Benchmarks read deliveries per match
 * from these; take a {@link StackCounters.snapshot} before and after and subtract with {@link diffCounters}.
 */
export class StackCounters {
  readonly delivered: Record<DeliveryKind, number> = Object.fromEntries(
    DELIVERY_KINDS.map((kind) => [kind, 0]),
  ) as Record<DeliveryKind, number>;
  presenceMessages = 0;
  broadcastsReceived = 0;
  joins = 0;
  joinErrors = 0;
  connectionsOpened = 0;
  connectionsOpen = 0;
  rpcCalls = 0;
  rpcErrors = 0;
  rpcInFlight = 0;
  quotaStops = 0;
  readonly rpcByFunction: Record<string, number> = {};

  /** Count one message of `kind` written to a socket. */
  countDelivery(kind: DeliveryKind, count = 1): void {
    this.delivered[kind] += count;
  }

  /** Count one RPC call and whether it failed. */
  countRpc(fn: string, failed: boolean): void {
    this.rpcCalls += 1;
    if (failed) this.rpcErrors += 1;
    this.rpcByFunction[fn] = (this.rpcByFunction[fn] ?? 0) + 1;
  }

  /** A frozen copy of every counter. */
  snapshot(): StackCountersSnapshot {
    const delivered = { ...this.delivered };
    return Object.freeze({
      delivered: Object.freeze(delivered),
      deliveredTotal: DELIVERY_KINDS.reduce((sum, kind) => sum + delivered[kind], 0),
      presenceEvents: delivered.presence_state + delivered.presence_diff,
      presenceMessages: this.presenceMessages,
      broadcastsReceived: this.broadcastsReceived,
      joins: this.joins,
      joinErrors: this.joinErrors,
      connectionsOpened: this.connectionsOpened,
      connectionsOpen: this.connectionsOpen,
      rpcCalls: this.rpcCalls,
      rpcErrors: this.rpcErrors,
      rpcInFlight: this.rpcInFlight,
      rpcByFunction: Object.freeze({ ...this.rpcByFunction }),
      quotaStops: this.quotaStops,
    });
  }
}

/** `after - before` for every numeric counter (gauges such as `connectionsOpen` and `rpcInFlight` keep `after`'s value). */
export function diffCounters(
  before: StackCountersSnapshot,
  after: StackCountersSnapshot,
): StackCountersSnapshot {
  const delivered = Object.fromEntries(
    DELIVERY_KINDS.map((kind) => [kind, after.delivered[kind] - before.delivered[kind]]),
  ) as Record<DeliveryKind, number>;
  const rpcByFunction: Record<string, number> = {};
  for (const [fn, n] of Object.entries(after.rpcByFunction))
    rpcByFunction[fn] = n - (before.rpcByFunction[fn] ?? 0);
  return Object.freeze({
    delivered: Object.freeze(delivered),
    deliveredTotal: after.deliveredTotal - before.deliveredTotal,
    presenceEvents: after.presenceEvents - before.presenceEvents,
    presenceMessages: after.presenceMessages - before.presenceMessages,
    broadcastsReceived: after.broadcastsReceived - before.broadcastsReceived,
    joins: after.joins - before.joins,
    joinErrors: after.joinErrors - before.joinErrors,
    connectionsOpened: after.connectionsOpened - before.connectionsOpened,
    connectionsOpen: after.connectionsOpen,
    rpcCalls: after.rpcCalls - before.rpcCalls,
    rpcErrors: after.rpcErrors - before.rpcErrors,
    rpcInFlight: after.rpcInFlight,
    rpcByFunction: Object.freeze(rpcByFunction),
    quotaStops: after.quotaStops - before.quotaStops,
  });
}
