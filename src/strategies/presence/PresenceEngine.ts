import { type Environment, silentLogger, type TimerHandle } from '../../core/environment';
import { MatchmakingError, MatchmakingErrorCode, toMatchmakingError } from '../../core/errors';
import type { CancelOutcome, SearchOutcome, StrategyListener } from '../../core/MatchmakingStrategy';
import type { SearchCriteria, SearchInfo } from '../../core/types';
import { criteriaPoolKey } from '../../core/validation';
import type { RealtimeChannelLike, SupabaseLike } from '../supabaseLike';
import { PRESENCE_HINTS, PresenceRoom, type PresenceRoomHandlers } from './PresenceRoom';
import { compareMembers, type PresencePair } from './PresenceView';
import {
  type ClaimLossReason,
  decodePresenceState,
  MAX_RANK_US,
  PRESENCE_RPC,
  type PresenceState,
  presenceEndReason,
  presenceRpcError,
  toPresenceMatchInfo,
} from './presenceProtocol';
import type { QuotaEstimate, QuotaGuard } from './quotaGuard';

function stopError(channel: string, message: string, quota: boolean): MatchmakingError {
  return new MatchmakingError(
    quota ? MatchmakingErrorCode.RateLimited : MatchmakingErrorCode.Unavailable,
    `The Realtime server closed the presence channel ${channel}: "${message}". ${
      quota
        ? 'A Supabase Realtime quota was exceeded (see docs/presence-capacity.md); the search ended.'
        : 'The search ended; start a new one.'
    }`,
    { details: { channel, message } },
  );
}

/** How the engine lays a search out over channels. */
export interface PresenceLayout {
  readonly kind: 'presence' | 'sharded-presence';
  /** Number of shards; undefined for the single channel. */
  readonly shards: number | undefined;
  /** Channel of a shard (or the single channel for `undefined`). */
  channelName(shard: number | undefined): string;
  /** Sharded: move on after this long without a match. */
  readonly rotateAfterMs: number | undefined;
  /** Sharded: `directed` asks the database for a shard where someone waits alone; `round-robin` is the design's. */
  readonly placement: 'directed' | 'round-robin';
}

/** Tuning shared by both tiers. */
export interface PresenceEngineOptions {
  readonly supabase: SupabaseLike;
  readonly layout: PresenceLayout;
  readonly env: Environment;
  readonly settleMs: number;
  readonly stickyMs: number;
  readonly staleBackoffMs: number;
  readonly joinTimeoutMs: number;
  readonly guard: QuotaGuard | undefined;
}

/** Counters of one strategy instance, for tests, benchmarks and dashboards. */
export interface PresenceStats {
  /** Claims this client called. */
  readonly claims: number;
  /** Claims that made a match. */
  readonly claimsWon: number;
  /** Claims that lost, by the database's reason. */
  readonly claimsLost: Readonly<Partial<Record<ClaimLossReason, number>>>;
  /** Shard moves (sharded tier). */
  readonly moves: number;
  /** State reconciliations (after a notification, a reconnect, a partner leaving). */
  readonly reconciles: number;
  /** Times this client stepped aside (its pair-mate left) and came back because it was still searching. */
  readonly returns: number;
}

interface ActiveSearch {
  readonly searchId: string;
  readonly listener: StrategyListener;
  readonly criteria: SearchCriteria;
  readonly pool: string;
  rowId: string | undefined;
  userId: string | undefined;
  startedUs: number | undefined;
  heartbeatMs: number;
  shard: number | undefined;
  room: PresenceRoom | undefined;
  notify: RealtimeChannelLike | undefined;
  /** Search has been confirmed (tracked once); until then search() owns the flow. */
  started: boolean;
  done: boolean;
  cancelling: boolean;
  moving: boolean;
  claimInFlight: boolean;
  /** Current pair as "partner|claimer", and since when (clock ms). */
  pairKey: string;
  pairSince: number;
  /** The pair whose settle time has passed; it is claimed after one more look at the view (see #evaluate). */
  armedKey: string;
  /**
   * Our committed pair-mate: the partner of a pair that held for settleMs / 2. While it is present (same rank)
   * we pair with nobody else, whatever momentary shifts of the rule say, for at most stickyMs: it may be
   * claiming us right now. When it leaves, we step aside.
   */
  pairPartner: string | undefined;
  mateRank: number;
  mateSince: number;
  /** Our pair-mate left: we untracked and are asking the database whether it matched us. */
  steppingAside: boolean;
  /** A notification came or our pair-mate left: no claim until the database says we are still searching. */
  suspect: boolean;
  /** Users this client found unclaimable (the database said they are not searching) until the time given. */
  readonly unclaimable: Map<string, number>;
  evalTimer: TimerHandle | undefined;
  evalAt: number;
  heartbeatTimer: TimerHandle | undefined;
  rotateTimer: TimerHandle | undefined;
  reconciling: Promise<void> | undefined;
  reconcileAgain: boolean;
}

/**
 * The machinery both presence tiers share: open a search in the database, be present in a channel, pair with
 * the deterministic rule, claim through the race-safe RPC, learn outcomes from the private topic (verified with
 * the state RPC), reconnect, and leave cleanly.
 *
 * @internal
 */
export class PresenceEngine {
  readonly #o: PresenceEngineOptions;
  #active: ActiveSearch | undefined;
  #closed = false;
  readonly #finishing = new Set<Promise<void>>();
  #claims = 0;
  #claimsWon = 0;
  readonly #claimsLost: Partial<Record<ClaimLossReason, number>> = {};
  #moves = 0;
  #reconciles = 0;
  #returns = 0;

  constructor(options: PresenceEngineOptions) {
    this.#o = options;
  }

  get stats(): PresenceStats {
    return {
      claims: this.#claims,
      claimsWon: this.#claimsWon,
      claimsLost: { ...this.#claimsLost },
      moves: this.#moves,
      reconciles: this.#reconciles,
      returns: this.#returns,
    };
  }

  /** The quota guard's estimate, or undefined without a guard. */
  quotaEstimate(): QuotaEstimate | undefined {
    return this.#o.guard?.estimate();
  }

  /** The shard the running search is in (sharded tier), for tests and dashboards. */
  get currentShard(): number | undefined {
    return this.#active?.shard;
  }

  async search(search: SearchInfo, listener: StrategyListener): Promise<SearchOutcome> {
    if (this.#closed) {
      throw new MatchmakingError(
        MatchmakingErrorCode.Closed,
        `This ${this.#o.layout.kind} strategy is closed.`,
      );
    }
    // Channels of the previous search must be gone first: supabase.channel(name) returns an existing instance.
    await Promise.all([...this.#finishing]);
    await this.#admit(listener);
    const layout = this.#o.layout;
    const active: ActiveSearch = {
      searchId: search.searchId,
      listener,
      criteria: search.criteria,
      pool: criteriaPoolKey(search.criteria),
      rowId: undefined,
      userId: undefined,
      startedUs: undefined,
      heartbeatMs: 15_000,
      shard: layout.shards === undefined ? undefined : Math.floor(this.#o.env.random() * layout.shards),
      room: undefined,
      notify: undefined,
      started: false,
      done: false,
      cancelling: false,
      moving: false,
      claimInFlight: false,
      pairKey: '',
      pairSince: 0,
      armedKey: '',
      pairPartner: undefined,
      mateRank: 0,
      mateSince: 0,
      steppingAside: false,
      suspect: false,
      unclaimable: new Map(),
      evalTimer: undefined,
      evalAt: Number.POSITIVE_INFINITY,
      heartbeatTimer: undefined,
      rotateTimer: undefined,
      reconciling: undefined,
      reconcileAgain: false,
    };
    this.#active = active;
    // Join first, then open the search, then track at once: the database's start time (the sort key) is then
    // taken right before the track reaches the channel, so newcomers sort last and existing pairs do not shift.
    let room = this.#openRoom(active, active.shard);
    try {
      await room.ready(this.#o.joinTimeoutMs);
    } catch (error) {
      await this.#finish(active);
      throw toMatchmakingError(
        error,
        MatchmakingErrorCode.Unavailable,
        'Could not join the presence channel',
      );
    }
    let state: PresenceState;
    try {
      state = await this.#call(PRESENCE_RPC.begin, {
        criteria: search.criteria,
        search_id: search.searchId,
        shard: active.shard ?? null,
      });
    } catch (error) {
      await this.#finish(active);
      throw error;
    }
    active.userId = state.userId;
    active.rowId = state.searchId;
    active.startedUs = state.startedUs;
    if (state.heartbeatIntervalMs !== undefined) active.heartbeatMs = state.heartbeatIntervalMs;
    if (state.status === 'matched' && state.match) {
      await this.#finish(active);
      return {
        status: 'matched',
        match: toPresenceMatchInfo(state.userId, state.match, layout.kind),
        userId: state.userId,
      };
    }
    if (state.status !== 'searching' || active.rowId === undefined || active.startedUs === undefined) {
      // Only possible when this very search id already ended; report it once the search is confirmed.
      await this.#finish(active);
      queueMicrotask(() => {
        listener.ended(search.searchId, presenceEndReason(state.status) ?? 'expired');
      });
      return { status: 'searching' };
    }
    try {
      if (layout.shards !== undefined && state.shard !== undefined && state.shard !== active.shard) {
        // Another tab of this user searches already, in another shard: join that one.
        await room.leave();
        active.shard = state.shard;
        room = this.#openRoom(active, state.shard);
        await room.ready(this.#o.joinTimeoutMs);
      }
      await this.#track(active, room);
    } catch (error) {
      const outcome = await this.#abandon(active);
      if (outcome) return outcome;
      throw toMatchmakingError(
        error,
        MatchmakingErrorCode.Unavailable,
        'Could not enter the presence channel',
      );
    }
    // Claimed (and told) while the track was on its way: the listener already has the outcome.
    if (active.done) return { status: 'searching' };
    this.#listen(active, state.topic);
    active.started = true;
    this.#scheduleHeartbeat(active);
    this.#scheduleRotation(active);
    this.#schedule(active, 0);
    return { status: 'searching' };
  }

  async cancel(searchId: string): Promise<CancelOutcome> {
    const active = this.#active;
    if (!active || active.searchId !== searchId || active.done) return { status: 'not_searching' };
    active.cancelling = true;
    this.#clearTimers(active);
    // Leave first: nobody pairs with us any more, so no claim is wasted on a search about to end.
    await active.room?.leave();
    let state: PresenceState;
    try {
      state = await this.#call(PRESENCE_RPC.end, { search_id: active.rowId ?? null });
    } catch (error) {
      // Still searching as far as we know: come back into the channel and let the caller retry.
      active.cancelling = false;
      if (!active.done) this.#reenter(active);
      throw error;
    }
    if (state.result === 'cancelled') {
      await this.#finish(active);
      return { status: 'cancelled' };
    }
    if (state.status === 'matched' && state.match) {
      await this.#finish(active);
      return {
        status: 'matched',
        match: toPresenceMatchInfo(state.userId, state.match, this.#o.layout.kind),
        userId: state.userId,
      };
    }
    // Ended otherwise meanwhile (expired, superseded by another tab): report the real reason.
    if (state.status !== 'searching') active.cancelling = false;
    this.#apply(active, state);
    return { status: 'not_searching' };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const active = this.#active;
    if (active) await this.#finish(active);
    await Promise.all([...this.#finishing]);
  }

  // ----------------------------------------------------------------------------------------------------------
  // Admission (quota guard)

  async #admit(listener: StrategyListener): Promise<void> {
    const guard = this.#o.guard;
    if (!guard) return;
    for (const warning of guard.due()) listener.warning?.(warning);
    if (guard.action === 'warn') return;
    const deadline = this.#o.env.clock.now() + (guard.action === 'backoff' ? guard.maxBackoffMs : 0);
    for (;;) {
      const [worst] = guard.pressing();
      if (!worst) return;
      const now = this.#o.env.clock.now();
      if (now >= deadline) {
        throw new MatchmakingError(
          MatchmakingErrorCode.RateLimited,
          `Not starting a presence search: ${worst.message}`,
          { details: { ...worst.details, code: worst.code } },
        );
      }
      await new Promise<void>((resolve) =>
        this.#o.env.timers.setTimeout(resolve, Math.min(1000, Math.max(1, deadline - now))),
      );
      if (this.#closed) {
        throw new MatchmakingError(
          MatchmakingErrorCode.Closed,
          `This ${this.#o.layout.kind} strategy is closed.`,
        );
      }
    }
  }

  #warnDue(active: ActiveSearch): void {
    const guard = this.#o.guard;
    if (!guard) return;
    for (const warning of guard.due()) active.listener.warning?.(warning);
  }

  // ----------------------------------------------------------------------------------------------------------
  // Rooms

  #openRoom(active: ActiveSearch, shard: number | undefined): PresenceRoom {
    const room = new PresenceRoom(
      this.#o.supabase,
      this.#o.layout.channelName(shard),
      shard,
      this.#roomHandlers(active),
      this.#o.env,
    );
    active.room = room;
    room.open();
    return room;
  }

  #roomHandlers(active: ActiveSearch): PresenceRoomHandlers {
    const guard = this.#o.guard;
    return {
      joined: (room, ref, meta) => {
        if (room !== active.room) return;
        room.view.add(ref, meta as Readonly<Record<string, unknown>>);
        guard?.recordTrack(room.view.metaCount);
        this.#warnDue(active);
        this.#schedule(active, 0);
      },
      leaving: (room, ref) => this.#onLeaving(active, room, ref),
      subscribed: (room, first) => {
        if (room !== active.room) return;
        guard?.recordJoin(room.view.metaCount);
        if (first || active.done || active.cancelling || !active.started) return;
        // Back after a reconnect: the server dropped our presence, and we may have missed a match.
        void this.#track(active, room).catch((error: unknown) => {
          if (!room.closed)
            active.listener.error(toMatchmakingError(error, MatchmakingErrorCode.Unavailable));
        });
        void this.#reconcile(active);
      },
      interrupted: (room, status, error) => {
        if (room !== active.room || active.done) return;
        active.listener.error(
          new MatchmakingError(
            MatchmakingErrorCode.Unavailable,
            `Presence channel ${room.name}: ${status.toLowerCase()}; supabase-js is rejoining and the search resumes when it is back.`,
            { cause: error, details: { channel: room.name, status } },
          ),
        );
      },
      stopped: (room, message, quota) => {
        if (room !== active.room || active.done || active.cancelling || !active.started) return;
        void this.#stopped(active, stopError(room.name, message, quota));
      },
      hint: (room, event, payload) => {
        if (room !== active.room || event !== PRESENCE_HINTS.ineligible) return;
        const p = payload as { a?: unknown; b?: unknown } | undefined;
        if (typeof p?.a === 'string' && typeof p.b === 'string') {
          room.view.markIneligible(p.a, p.b);
          this.#schedule(active, 0);
        }
      },
      warn: (warning) => {
        if (!active.done) active.listener.warning?.(warning);
      },
    };
  }

  #onLeaving(active: ActiveSearch, room: PresenceRoom, ref: string): void {
    if (room !== active.room) return;
    const view = room.view;
    // Was the leaver our pair-mate, in a pair we have held for a while? Then it most likely just matched us. (A
    // pair formed a moment ago, by the first of two leaves, does not count: stepping aside for it would make
    // the next searcher step aside too, and so on.)
    const leaver = view.isLastMeta(ref) ? view.userOf(ref) : undefined;
    const mateLeft = leaver !== undefined && room.tracked && leaver === active.pairPartner;
    const removed = view.remove(ref);
    this.#o.guard?.recordLeave(view.metaCount);
    if (removed?.gone) active.unclaimable.delete(removed.userId);
    if (mateLeft && !active.done && !active.cancelling) void this.#stepAside(active, room);
    this.#warnDue(active);
    this.#schedule(active, 0);
  }

  /**
   * Our pair-mate left. Untrack at once, before asking why: the two leaves then reach everyone almost together
   * and cancel out, so the pairs behind us do not shift (no client needs to remember anything). Then ask the
   * database: matched, we are done; still searching, we track again, after everyone present. (When the
   * channel's presence window is used up, we stay tracked and only ask.)
   */
  async #stepAside(active: ActiveSearch, room: PresenceRoom): Promise<void> {
    if (active.steppingAside) return;
    active.steppingAside = true;
    active.suspect = true;
    this.#o.env.logger.debug('presence step aside', {
      user: active.userId,
      mate: active.pairPartner,
      channel: room.name,
    });
    // The untrack goes out at once; the database is asked meanwhile. Neither may hold us forever. With the
    // channel's presence window used up, the untrack could only go out when it reopens (up to 30 s later): too
    // late to cancel out our mate's leave, and it would then hide a searcher that is still searching. Stay.
    const untracked =
      room.untrackWaitMs() > 0
        ? Promise.resolve()
        : room.untrack().catch((error: unknown) => {
            this.#o.env.logger.debug('presence untrack failed', { user: active.userId, error });
          });
    try {
      await this.#bounded(Promise.all([untracked, this.#reconcile(active)]), this.#o.joinTimeoutMs);
    } finally {
      active.steppingAside = false;
    }
    if (active.done || active.cancelling || active.moving || room !== active.room) return;
    this.#returns += 1;
    this.#o.env.logger.debug('presence return', { user: active.userId, channel: room.name });
    await this.#ensureTracked(active);
  }

  /** Resolves when `promise` settles or after `ms`, whichever comes first. */
  #bounded(promise: Promise<unknown>, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = this.#o.env.timers.setTimeout(resolve, ms);
      const done = () => {
        this.#o.env.timers.clearTimeout(timer);
        resolve();
      };
      promise.then(done, done);
    });
  }

  /** Still searching, joined, but not tracked (after stepping aside, a failed track): track again. */
  async #ensureTracked(active: ActiveSearch): Promise<void> {
    const room = active.room;
    if (active.done || active.cancelling || active.moving || active.steppingAside || !active.started) return;
    if (!room?.joined || room.tracked) {
      this.#schedule(active, 0);
      return;
    }
    try {
      await this.#track(active, room);
    } catch (error) {
      if (!active.done && !room.closed) {
        active.listener.error(toMatchmakingError(error, MatchmakingErrorCode.Unavailable));
      }
    }
  }

  /**
   * Track our presence. The rank is the search start, or just after the newest member in view when that is
   * later (a move, a reconnect, a re-announce): we join the end of the pairing order and shift no formed pair.
   */
  async #track(active: ActiveSearch, room: PresenceRoom): Promise<void> {
    if (active.userId === undefined || active.startedUs === undefined) return;
    active.pairKey = '';
    active.pairPartner = undefined;
    active.mateSince = 0;
    const view = room.view;
    const rank = Math.min(MAX_RANK_US, Math.max(active.startedUs, view.maxRank() + 1));
    this.#o.env.logger.debug('presence track', { user: active.userId, members: view.size });
    await room.track({ user_id: active.userId, rank_us: rank, criteria: active.criteria });
    active.pairKey = '';
    this.#schedule(active, 0);
  }

  /** After a failed cancel: be visible again (a fresh channel). */
  #reenter(active: ActiveSearch): void {
    const room = this.#openRoom(active, active.shard);
    void room
      .ready(0)
      .then(() => this.#track(active, room))
      .then(() => {
        this.#scheduleHeartbeat(active);
        this.#scheduleRotation(active);
      })
      .catch((error: unknown) => {
        if (!active.done) active.listener.error(toMatchmakingError(error, MatchmakingErrorCode.Unavailable));
      });
  }

  /** The server stopped our channel (or refused to let us in): end the search with `error`. */
  async #stopped(active: ActiveSearch, error: MatchmakingError): Promise<void> {
    const quota = error.code === MatchmakingErrorCode.RateLimited;
    active.cancelling = true;
    this.#clearTimers(active);
    // Nobody sees us any more: withdraw the search, unless a claim won meanwhile.
    try {
      const state = await this.#call(PRESENCE_RPC.end, { search_id: active.rowId ?? null });
      if (state.status === 'matched' && state.match) {
        this.#apply(active, state);
        return;
      }
    } catch (failure) {
      this.#o.env.logger.warn('ending a stopped presence search failed', { error: failure });
    }
    if (active.done) return;
    void this.#finish(active);
    active.listener.ended(active.searchId, quota ? 'rate_limited' : 'error', error);
  }

  // ----------------------------------------------------------------------------------------------------------
  // Pairing

  /** Users this client skips locally (the database said they cannot be claimed), pruned of expired entries. */
  #skipped(active: ActiveSearch, now = this.#o.env.clock.now()): Set<string> {
    const out = new Set<string>();
    for (const [userId, until] of active.unclaimable) {
      if (until <= now) active.unclaimable.delete(userId);
      else out.add(userId);
    }
    return out;
  }

  #nextExpiry(active: ActiveSearch): number {
    let next = Number.POSITIVE_INFINITY;
    for (const until of active.unclaimable.values()) next = Math.min(next, until);
    return next;
  }

  /** Run {@link #evaluate} after `delayMs` (coalesced: the earliest request wins). */
  #schedule(active: ActiveSearch, delayMs: number): void {
    if (active.done) return;
    const at = this.#o.env.clock.now() + Math.max(0, delayMs);
    if (active.evalTimer !== undefined && active.evalAt <= at) return;
    if (active.evalTimer !== undefined) this.#o.env.timers.clearTimeout(active.evalTimer);
    active.evalAt = at;
    active.evalTimer = this.#o.env.timers.setTimeout(
      () => {
        active.evalTimer = undefined;
        active.evalAt = Number.POSITIVE_INFINITY;
        this.#evaluate(active);
      },
      Math.max(0, delayMs),
    );
  }

  #evaluate(active: ActiveSearch): void {
    const room = active.room;
    if (active.done || active.cancelling || active.moving || active.steppingAside || !active.started) return;
    if (!room?.tracked) return;
    if (active.userId === undefined) return;
    const now = this.#o.env.clock.now();
    const skipped = this.#skipped(active, now);
    const pair = this.#effectivePair(active, room, skipped, now);
    const key = pair ? `${pair.partner.userId}|${pair.claimer ? 'claim' : 'wait'}` : '';
    if (key !== active.pairKey) {
      active.pairKey = key;
      active.pairSince = now;
      active.armedKey = '';
    }
    if (pair && active.pairPartner !== pair.partner.userId) {
      const held = now - active.pairSince;
      if (held >= this.#o.settleMs / 2) {
        active.pairPartner = pair.partner.userId;
        active.mateRank = pair.partner.rank;
        active.mateSince = now;
      } else {
        this.#schedule(active, this.#o.settleMs / 2 - held);
      }
    }
    const expiry = this.#nextExpiry(active);
    if (expiry !== Number.POSITIVE_INFINITY) this.#schedule(active, expiry - now);
    if (!pair?.claimer || active.claimInFlight || active.suspect) return;
    const wait = active.pairSince + this.#o.settleMs - now;
    if (wait > 0) {
      this.#schedule(active, wait);
      return;
    }
    if (active.armedKey !== key) {
      // Stable for settleMs as far as we processed. A busy client may have diffs waiting unread: look once
      // more after them (a 0 ms timer runs after pending I/O) before claiming.
      active.armedKey = key;
      this.#schedule(active, 0);
      return;
    }
    active.armedKey = '';
    if (this.#o.env.logger !== silentLogger) {
      this.#o.env.logger.debug('presence claim', {
        user: active.userId,
        partner: pair.partner.userId,
        channel: room.name,
        stableMs: now - active.pairSince,
        order: room.view.pool(active.pool).map((m) => `${m.userId}${skipped.has(m.userId) ? '!' : ''}`),
      });
    }
    void this.#claim(active, room, pair.partner.userId);
  }

  /** The rule's pair for us, or our committed mate while it is present and not too old (see `pairPartner`). */
  #effectivePair(
    active: ActiveSearch,
    room: PresenceRoom,
    skipped: ReadonlySet<string>,
    now: number,
  ): PresencePair | undefined {
    const me = active.userId as string;
    const pair = room.view.pairOf(me, skipped);
    const mateId = active.pairPartner;
    if (mateId === undefined || pair?.partner.userId === mateId) return pair;
    const mate = room.view.member(mateId);
    const self = room.view.member(me);
    if (
      !mate ||
      !self ||
      mate.rank !== active.mateRank ||
      skipped.has(mateId) ||
      now - active.mateSince >= this.#o.stickyMs
    ) {
      // Gone, back with a new rank (it stepped aside: not our pair in its view), or waited long enough.
      active.pairPartner = undefined;
      return pair;
    }
    this.#schedule(active, active.mateSince + this.#o.stickyMs - now);
    return { partner: mate, claimer: compareMembers(self, mate) < 0 };
  }

  async #claim(active: ActiveSearch, room: PresenceRoom, partnerId: string): Promise<void> {
    if (active.userId === undefined) return;
    active.claimInFlight = true;
    this.#claims += 1;
    let state: PresenceState;
    try {
      state = await this.#call(PRESENCE_RPC.claim, { user_a: active.userId, user_b: partnerId });
    } catch (error) {
      active.claimInFlight = false;
      active.listener.error(toMatchmakingError(error, MatchmakingErrorCode.Unavailable));
      // The claim may have committed before the answer was lost.
      void this.#reconcile(active);
      return;
    }
    active.claimInFlight = false;
    if (state.result === 'claimed') {
      this.#claimsWon += 1;
      this.#apply(active, state);
      return;
    }
    const reason = (state.reason ?? 'partner_not_searching') as ClaimLossReason;
    this.#claimsLost[reason] = (this.#claimsLost[reason] ?? 0) + 1;
    this.#o.env.logger.debug('presence claim lost', {
      user: active.userId,
      partner: partnerId,
      reason,
      channel: room.name,
    });
    if (active.done) return;
    if (state.status !== 'searching') {
      // We were matched (the partner claimed us), or our search ended.
      this.#apply(active, state);
      return;
    }
    const now = this.#o.env.clock.now();
    if (reason === 'not_eligible') {
      room.view.markIneligible(active.userId, partnerId);
      room.hint(PRESENCE_HINTS.ineligible, { a: active.userId, b: partnerId });
    } else {
      // Present but not claimable (ended, expired, matched elsewhere, forged): skip it for a while.
      active.unclaimable.set(partnerId, now + this.#o.staleBackoffMs);
    }
    this.#schedule(active, 0);
  }

  // ----------------------------------------------------------------------------------------------------------
  // Outcomes

  /** Applies a database answer about our search. */
  #apply(active: ActiveSearch, state: PresenceState): void {
    if (active.done || this.#active !== active) return;
    if (state.searchId !== undefined && active.rowId !== undefined && state.searchId !== active.rowId) return;
    // While our end RPC is in flight its answer reports the ending (a state check prompted by the ending's own
    // notification can answer first); only a match is taken at once.
    if (active.cancelling && !(state.status === 'matched' && state.match)) return;
    if (state.status === 'searching') {
      if (
        this.#o.layout.shards !== undefined &&
        state.shard !== undefined &&
        state.shard !== active.shard &&
        !active.moving &&
        !active.cancelling
      ) {
        // Another tab of this user moved: follow it, so one user is never in two shards.
        void this.#moveTo(active, state.shard);
      }
      return;
    }
    if (state.status === 'matched' && state.match) {
      void this.#finish(active);
      active.listener.matched(active.searchId, {
        match: toPresenceMatchInfo(state.userId, state.match, this.#o.layout.kind),
        userId: state.userId,
      });
      return;
    }
    void this.#finish(active);
    active.listener.ended(active.searchId, presenceEndReason(state.status) ?? 'expired');
  }

  /** Subscribes to the user's private topic. Notifications are hints: each one is verified with the state RPC. */
  #listen(active: ActiveSearch, topic: string): void {
    const onHint = (payload: unknown) => {
      const p = payload as { ticket_id?: unknown } | undefined;
      if (p?.ticket_id !== active.rowId) return;
      active.suspect = true;
      void this.#reconcile(active);
    };
    const channel = this.#o.supabase
      .channel(topic, { config: { private: true } })
      .on('broadcast', { event: 'matched' }, (message) => onHint(message.payload))
      .on('broadcast', { event: 'cancelled' }, (message) => onHint(message.payload));
    active.notify = channel;
    channel.subscribe((status, error) => {
      if (active.done) return;
      if (status === 'SUBSCRIBED') {
        void this.#reconcile(active);
      } else if (status === 'CLOSED') {
        // Stopped by the server and not rejoined: heartbeats and the presence channel still reconcile.
        active.notify = undefined;
        active.listener.error(
          new MatchmakingError(
            MatchmakingErrorCode.Unavailable,
            'The notification channel was closed by the server; relying on heartbeats to learn about matches.',
            { cause: error },
          ),
        );
      }
    });
  }

  /** Asks the database for our search's state (single flight; a request during a call runs once more after). */
  #reconcile(active: ActiveSearch): Promise<void> {
    if (active.done) return Promise.resolve();
    if (active.reconciling) {
      active.reconcileAgain = true;
      return active.reconciling;
    }
    const run = async () => {
      do {
        active.reconcileAgain = false;
        this.#reconciles += 1;
        try {
          this.#apply(active, await this.#call(PRESENCE_RPC.state, { search_id: active.rowId ?? null }));
        } catch (error) {
          if (!active.done)
            active.listener.error(toMatchmakingError(error, MatchmakingErrorCode.Unavailable));
        }
      } while (active.reconcileAgain && !active.done);
      if (!active.done && active.suspect) {
        active.suspect = false;
        this.#schedule(active, 0);
      }
    };
    active.reconciling = run().finally(() => {
      active.reconciling = undefined;
    });
    return active.reconciling;
  }

  #scheduleHeartbeat(active: ActiveSearch): void {
    if (active.done) return;
    if (active.heartbeatTimer !== undefined) this.#o.env.timers.clearTimeout(active.heartbeatTimer);
    active.heartbeatTimer = this.#o.env.timers.setTimeout(() => {
      active.heartbeatTimer = undefined;
      void this.#heartbeat(active);
    }, active.heartbeatMs);
  }

  async #heartbeat(active: ActiveSearch): Promise<void> {
    if (active.done || active.cancelling) return;
    try {
      const state = await this.#call(PRESENCE_RPC.heartbeat, { search_id: active.rowId ?? null });
      if (state.heartbeatIntervalMs !== undefined) active.heartbeatMs = state.heartbeatIntervalMs;
      this.#apply(active, state);
    } catch (error) {
      if (!active.done) active.listener.error(toMatchmakingError(error, MatchmakingErrorCode.Unavailable));
    }
    this.#warnDue(active);
    // Watchdog: a searcher that lost its presence (a failed re-track) comes back.
    void this.#ensureTracked(active);
    if (!active.cancelling) this.#scheduleHeartbeat(active);
  }

  // ----------------------------------------------------------------------------------------------------------
  // Shards

  #scheduleRotation(active: ActiveSearch, delayMs = this.#o.layout.rotateAfterMs): void {
    if (active.done || delayMs === undefined || this.#o.layout.shards === undefined) return;
    if (active.rotateTimer !== undefined) this.#o.env.timers.clearTimeout(active.rotateTimer);
    active.rotateTimer = this.#o.env.timers.setTimeout(() => {
      active.rotateTimer = undefined;
      void this.#rotate(active);
    }, delayMs);
  }

  async #rotate(active: ActiveSearch): Promise<void> {
    const layout = this.#o.layout;
    const shards = layout.shards;
    const rotateAfterMs = layout.rotateAfterMs;
    const current = active.shard;
    if (active.done || active.cancelling || shards === undefined || rotateAfterMs === undefined) return;
    if (current === undefined) return;
    const now = this.#o.env.clock.now();
    if (active.moving || active.claimInFlight) {
      this.#scheduleRotation(active, this.#o.settleMs);
      return;
    }
    if (active.pairKey !== '' && now - active.pairSince < rotateAfterMs) {
      // Paired here: give the claim its time before looking elsewhere.
      this.#scheduleRotation(active, rotateAfterMs - (now - active.pairSince));
      return;
    }
    const guard = this.#o.guard;
    if (guard && guard.action !== 'warn' && guard.pressing().length > 0) {
      // Every move costs presence events in two shards: hold still while the project is near its quota.
      this.#scheduleRotation(active);
      return;
    }
    const untrackWait = active.room?.untrackWaitMs() ?? 0;
    if (untrackWait > 0) {
      // This channel's presence window is used up: a move now would have to wait for it before it may untrack
      // (see #moveTo). Keep searching here until the untrack fits.
      this.#scheduleRotation(active, untrackWait);
      return;
    }
    let state: PresenceState;
    try {
      state = await this.#call(PRESENCE_RPC.move, {
        shard_count: shards,
        current_shard: current,
        target_shard: layout.placement === 'round-robin' ? (current + 1) % shards : null,
        search_id: active.rowId ?? null,
      });
    } catch (error) {
      if (!active.done) active.listener.error(toMatchmakingError(error, MatchmakingErrorCode.Unavailable));
      this.#scheduleRotation(active);
      return;
    }
    if (active.done || active.cancelling) return;
    if (state.status !== 'searching') {
      this.#apply(active, state);
      return;
    }
    const target = state.targetShard;
    if (target === undefined || target === current || active.shard !== current) {
      this.#scheduleRotation(active);
      return;
    }
    await this.#moveTo(active, target);
  }

  /**
   * Leave the current shard completely (untrack acknowledged, channel left), then enter `target`. When the
   * shard's presence window is used up, the leave waits for it rather than skip the untrack: a presence left to
   * the server's handling of `phx_leave` could overlap our track in `target`.
   */
  async #moveTo(active: ActiveSearch, target: number): Promise<void> {
    if (active.moving || active.done) return;
    active.moving = true;
    this.#moves += 1;
    try {
      await active.room?.leave({ waitForWindow: true });
      if (active.done || active.cancelling) return;
      active.shard = target;
      active.pairKey = '';
      const room = this.#openRoom(active, target);
      await room.ready(0);
      if (active.done || active.cancelling || room !== active.room) return;
      await this.#track(active, room);
    } catch (error) {
      if (!active.done && !active.cancelling) {
        const failure = toMatchmakingError(error, MatchmakingErrorCode.Unavailable);
        // A refused join (quota) or a closed channel leaves us nowhere: end the search. Anything else: say so;
        // supabase-js keeps rejoining and the next rotation retries.
        if (failure.code === MatchmakingErrorCode.RateLimited || active.room?.closed) {
          void this.#stopped(active, failure);
        } else {
          active.listener.error(failure);
        }
      }
    } finally {
      active.moving = false;
    }
    if (active.done) return;
    this.#scheduleRotation(active);
    this.#schedule(active, 0);
  }

  // ----------------------------------------------------------------------------------------------------------
  // Plumbing

  /**
   * Calls an RPC. Idempotent ones (all but the claim: begin has its search id as key) are retried twice on a
   * transport failure (no answer, 503, 520), since supabase-js never retries a POST. A failed claim is not
   * retried: the caller reconciles instead, as the claim may have committed.
   */
  async #call(fn: string, args: Record<string, unknown>): Promise<PresenceState> {
    const attempts = fn === PRESENCE_RPC.claim ? 1 : 3;
    for (let attempt = 1; ; attempt += 1) {
      let response: Awaited<ReturnType<SupabaseLike['rpc']>> | undefined;
      let failure: unknown;
      try {
        response = await this.#o.supabase.rpc(fn, args);
      } catch (cause) {
        failure = cause;
      }
      const transient =
        response === undefined || (response.error !== null && [0, 503, 520].includes(response.status));
      if (transient && attempt < attempts && !this.#closed) {
        await new Promise<void>((resolve) => this.#o.env.timers.setTimeout(resolve, 250 * attempt));
        continue;
      }
      if (response === undefined)
        throw toMatchmakingError(failure, MatchmakingErrorCode.Unavailable, `${fn} failed`);
      if (response.error) throw presenceRpcError(fn, response);
      return decodePresenceState(response.data);
    }
  }

  /** search() failed after the search was opened: withdraw it. Returns the match if a claim won meanwhile. */
  async #abandon(active: ActiveSearch): Promise<SearchOutcome | undefined> {
    active.cancelling = true;
    let outcome: SearchOutcome | undefined;
    try {
      const state = await this.#call(PRESENCE_RPC.end, { search_id: active.rowId ?? null });
      if (state.status === 'matched' && state.match) {
        outcome = {
          status: 'matched',
          match: toPresenceMatchInfo(state.userId, state.match, this.#o.layout.kind),
          userId: state.userId,
        };
      }
    } catch (error) {
      this.#o.env.logger.warn('withdrawing a failed presence search failed', { error });
    }
    await this.#finish(active);
    return outcome;
  }

  #clearTimers(active: ActiveSearch): void {
    const timers = this.#o.env.timers;
    if (active.evalTimer !== undefined) timers.clearTimeout(active.evalTimer);
    if (active.heartbeatTimer !== undefined) timers.clearTimeout(active.heartbeatTimer);
    if (active.rotateTimer !== undefined) timers.clearTimeout(active.rotateTimer);
    active.evalTimer = undefined;
    active.evalAt = Number.POSITIVE_INFINITY;
    active.heartbeatTimer = undefined;
    active.rotateTimer = undefined;
  }

  async #finish(active: ActiveSearch): Promise<void> {
    if (active.done) return;
    active.done = true;
    if (this.#active === active) this.#active = undefined;
    this.#clearTimers(active);
    const room = active.room;
    const notify = active.notify;
    active.notify = undefined;
    const removal = (async () => {
      await Promise.all([
        room?.leave(),
        notify
          ? Promise.resolve(this.#o.supabase.removeChannel(notify)).catch((error: unknown) =>
              this.#o.env.logger.warn('removeChannel failed', { error }),
            )
          : undefined,
      ]);
    })();
    this.#finishing.add(removal);
    try {
      await removal;
    } finally {
      this.#finishing.delete(removal);
    }
  }
}
