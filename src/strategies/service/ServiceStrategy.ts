import { type Environment, resolveEnvironment, type TimerHandle } from '../../core/environment';
import { MatchmakingError, MatchmakingErrorCode, toMatchmakingError } from '../../core/errors';
import type {
  CancelOutcome,
  MatchmakingStrategy,
  SearchOutcome,
  StrategyListener,
} from '../../core/MatchmakingStrategy';
import type { MatchInfo, SearchInfo } from '../../core/types';
import {
  type ClientFrame,
  type ErrorFrame,
  parseServerFrame,
  SERVICE_PROTOCOL_VERSION,
  type ServerFrame,
  ServiceCloseCode,
  ServiceErrorCode,
  type WireMatch,
} from './protocol';

type Handler<TEvent> = { bivarianceHack(event: TEvent): void }['bivarianceHack'];

/**
 * The slice of the WebSocket API the strategy uses. The browser's `WebSocket`, Node 22's global one and the
 * `ws` package's all fit.
 */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ readonly data: unknown }> | null;
  onclose: Handler<{ readonly code: number; readonly reason: string }> | null;
  onerror: Handler<unknown> | null;
}

/** A WebSocket constructor (`globalThis.WebSocket`, or `WebSocket` from `ws` on Node 20). */
export type WebSocketConstructorLike = new (url: string) => WebSocketLike;

/** Options of {@link ServiceStrategy}. */
export interface ServiceStrategyOptions {
  /**
   * The service's WebSocket URL (e.g. `wss://match.example.com/v1/matchmaking`), or a function called before
   * each connection attempt (to rotate over nodes when there is no load balancer).
   */
  readonly url: string | (() => string);
  /**
   * Returns the signed-in user's Supabase access token; called before each connection, so a refreshed session
   * is picked up on reconnect.
   *
   * @example With supabase-js
   * ```ts
   * getAccessToken: async () => (await supabase.auth.getSession()).data.session?.access_token
   * ```
   */
  readonly getAccessToken: () => string | null | undefined | Promise<string | null | undefined>;
  /** @defaultValue `globalThis.WebSocket` (pass `WebSocket` from `ws` on Node 20) */
  readonly WebSocket?: WebSocketConstructorLike;
  /** Clock, timers, logger and random source (for jitter). */
  readonly environment?: Partial<Environment>;
  /**
   * Delay before reconnect attempt `attempt` (0-based).
   * @defaultValue 100, 250, 500, 1000, 2000, then 5000 ms, each with ±20 % jitter
   */
  readonly reconnectAfterMs?: (attempt: number) => number;
  /** How long a request (join, cancel) may take, reconnects included, before it fails with `timeout`. @defaultValue 15000 */
  readonly requestTimeoutMs?: number;
}

interface PendingRequest {
  readonly frame: ClientFrame;
  readonly resolve: (frame: ServerFrame) => void;
  readonly reject: (error: MatchmakingError) => void;
  readonly timer: TimerHandle;
}

interface ActiveSearch {
  readonly info: SearchInfo;
  readonly listener: StrategyListener;
  ticketId: string | undefined;
  /** The server answered the join (the ticket exists); a reconnect resumes it. */
  joined: boolean;
  cancelling: boolean;
  /** A recoverable error was reported for the current outage (report once). */
  reportedOutage: boolean;
}

const BACKOFF_MS = [100, 250, 500, 1_000, 2_000, 5_000];
const OPEN = 1;

const ERROR_CODES: Record<string, MatchmakingErrorCode> = {
  [ServiceErrorCode.Unauthorized]: MatchmakingErrorCode.Unauthorized,
  [ServiceErrorCode.Forbidden]: MatchmakingErrorCode.Forbidden,
  [ServiceErrorCode.RateLimited]: MatchmakingErrorCode.RateLimited,
  [ServiceErrorCode.Unavailable]: MatchmakingErrorCode.Unavailable,
  [ServiceErrorCode.Draining]: MatchmakingErrorCode.Unavailable,
  [ServiceErrorCode.Internal]: MatchmakingErrorCode.Internal,
};

function fromErrorFrame(frame: ErrorFrame): MatchmakingError {
  return new MatchmakingError(ERROR_CODES[frame.code] ?? MatchmakingErrorCode.Protocol, frame.message, {
    details: { serviceCode: frame.code },
  });
}

function toMatchInfo(match: WireMatch): MatchInfo {
  return Object.freeze({
    matchId: match.matchId,
    userIds: Object.freeze([match.userIds[0], match.userIds[1]]) as readonly [string, string],
    createdAt: match.createdAt,
    strategy: 'service' as const,
    criteria: Object.freeze({ ...match.criteria }),
  });
}

/**
 * The service tier's strategy: a browser-safe WebSocket client of a `supabase-matchmaker/server` node (or a load
 * balancer in front of several).
 *
 * @remarks
 * - Connects on the first search and authenticates with `getAccessToken()`; the server takes the user id from the
 *   token.
 * - When the connection drops it reconnects with backoff (a non-fatal `error` event tells the app) and resumes
 *   the search by its ticket, keeping its place in the queue; requests in flight are retried on the new
 *   connection until `requestTimeoutMs`.
 * - Several strategies of one user (tabs, devices) share one ticket, as on every tier.
 *
 * @example
 * ```ts
 * const matchmaker = new Matchmaker(
 *   new ServiceStrategy({
 *     url: 'wss://match.example.com/v1/matchmaking',
 *     getAccessToken: async () => (await supabase.auth.getSession()).data.session?.access_token,
 *   }),
 * );
 * await matchmaker.start({ criteria: { language: 'en' } });
 * ```
 */
export class ServiceStrategy implements MatchmakingStrategy {
  readonly kind = 'service' as const;
  readonly #o: ServiceStrategyOptions;
  readonly #env: Environment;
  readonly #WebSocket: WebSocketConstructorLike;
  readonly #requestTimeoutMs: number;
  readonly #requests = new Map<string, PendingRequest>();
  #socket: WebSocketLike | undefined;
  #ready = false;
  #helloId: string | undefined;
  #userId: string | undefined;
  #search: ActiveSearch | undefined;
  #attempt = 0;
  #reconnectTimer: TimerHandle | undefined;
  #heartbeatTimer: TimerHandle | undefined;
  #resumeTimer: TimerHandle | undefined;
  #heartbeatMs = 25_000;
  #lastFrameAt = 0;
  #seq = 0;
  #closed = false;
  #resuming = false;
  #closeWaiters: (() => void)[] = [];

  constructor(options: ServiceStrategyOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new MatchmakingError(
        MatchmakingErrorCode.InvalidConfig,
        'ServiceStrategy needs options: new ServiceStrategy({ url, getAccessToken }).',
      );
    }
    if (typeof options.url === 'string') {
      if (!/^wss?:\/\//.test(options.url)) {
        throw new MatchmakingError(
          MatchmakingErrorCode.InvalidConfig,
          `ServiceStrategy url must be a ws:// or wss:// URL of the matchmaking service, got ${JSON.stringify(options.url)}.`,
          { details: { field: 'url' } },
        );
      }
    } else if (typeof options.url !== 'function') {
      throw new MatchmakingError(
        MatchmakingErrorCode.InvalidConfig,
        'ServiceStrategy needs url: the wss:// URL of the matchmaking service (or a function returning one).',
        { details: { field: 'url' } },
      );
    }
    if (typeof options.getAccessToken !== 'function') {
      throw new MatchmakingError(
        MatchmakingErrorCode.InvalidConfig,
        'ServiceStrategy needs getAccessToken(), e.g. async () => (await supabase.auth.getSession()).data.session?.access_token.',
        { details: { field: 'getAccessToken' } },
      );
    }
    const ctor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructorLike }).WebSocket;
    if (typeof ctor !== 'function') {
      throw new MatchmakingError(
        MatchmakingErrorCode.InvalidConfig,
        "This runtime has no global WebSocket: pass one, e.g. new ServiceStrategy({ ..., WebSocket }) with `import { WebSocket } from 'ws'` on Node 20.",
        { details: { field: 'WebSocket' } },
      );
    }
    const timeout = options.requestTimeoutMs ?? 15_000;
    if (!(Number.isFinite(timeout) && timeout > 0)) {
      throw new MatchmakingError(
        MatchmakingErrorCode.InvalidConfig,
        `requestTimeoutMs must be a positive number of milliseconds, got ${String(timeout)}.`,
        { details: { field: 'requestTimeoutMs' } },
      );
    }
    this.#o = options;
    this.#env = resolveEnvironment(options.environment);
    this.#WebSocket = ctor;
    this.#requestTimeoutMs = timeout;
  }

  async search(search: SearchInfo, listener: StrategyListener): Promise<SearchOutcome> {
    this.#assertOpen();
    const active: ActiveSearch = {
      info: search,
      listener,
      ticketId: undefined,
      joined: false,
      cancelling: false,
      reportedOutage: false,
    };
    this.#search = active;
    let reply: ServerFrame;
    try {
      reply = await this.#request((id) => ({
        v: SERVICE_PROTOCOL_VERSION,
        type: 'join',
        id,
        searchId: search.searchId,
        criteria: search.criteria,
      }));
    } catch (error) {
      if (this.#search === active) this.#search = undefined;
      throw error;
    }
    if (reply.type === 'matched') {
      if (this.#search === active) this.#search = undefined;
      return { status: 'matched', match: toMatchInfo(reply.match), userId: this.#userId ?? '' };
    }
    if (reply.type === 'cancelled') {
      if (this.#search === active) {
        this.#search = undefined;
        listener.ended(search.searchId, reply.reason);
      }
      return { status: 'searching' };
    }
    if (reply.type === 'queued' && this.#search === active) {
      active.ticketId = reply.ticketId;
      active.joined = true;
    }
    return { status: 'searching' };
  }

  async cancel(searchId: string): Promise<CancelOutcome> {
    const active = this.#search;
    if (!active || active.info.searchId !== searchId) return { status: 'not_searching' };
    active.cancelling = true;
    let reply: ServerFrame;
    try {
      reply = await this.#request(
        (id) =>
          active.ticketId === undefined
            ? { v: SERVICE_PROTOCOL_VERSION, type: 'cancel', id, searchId }
            : { v: SERVICE_PROTOCOL_VERSION, type: 'cancel', id, searchId, ticketId: active.ticketId },
        true,
      );
    } catch (error) {
      active.cancelling = false;
      throw error;
    }
    if (this.#search === active) this.#search = undefined;
    if (reply.type === 'matched') {
      return { status: 'matched', match: toMatchInfo(reply.match), userId: this.#userId ?? '' };
    }
    if (reply.type === 'cancelled' && reply.status === 'cancelled') return { status: 'cancelled' };
    return { status: 'not_searching' };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#search = undefined;
    for (const handle of [this.#reconnectTimer, this.#resumeTimer]) {
      if (handle !== undefined) this.#env.timers.clearTimeout(handle);
    }
    this.#reconnectTimer = undefined;
    this.#resumeTimer = undefined;
    this.#stopHeartbeat();
    const closed = new MatchmakingError(MatchmakingErrorCode.Closed, 'This ServiceStrategy was closed.');
    for (const [id, pending] of this.#requests) {
      this.#env.timers.clearTimeout(pending.timer);
      this.#requests.delete(id);
      pending.reject(closed);
    }
    const socket = this.#socket;
    if (!socket) return;
    await new Promise<void>((resolve) => {
      const timer = this.#env.timers.setTimeout(() => {
        this.#detachSocket(socket);
        resolve();
      }, 2_000);
      this.#closeWaiters.push(() => {
        this.#env.timers.clearTimeout(timer);
        resolve();
      });
      try {
        socket.close(ServiceCloseCode.Normal, 'closed');
      } catch {
        this.#detachSocket(socket);
        this.#env.timers.clearTimeout(timer);
        resolve();
      }
    });
  }

  #assertOpen(): void {
    if (this.#closed)
      throw new MatchmakingError(MatchmakingErrorCode.Closed, 'This ServiceStrategy was closed.');
  }

  // ------------------------------------------------------------------------------------------------------
  // Requests

  #request(build: (id: string) => ClientFrame, urgent = false): Promise<ServerFrame> {
    this.#assertOpen();
    if (urgent && this.#reconnectTimer !== undefined) {
      // Do not make a cancel wait for the backoff: try to reach the service now.
      this.#env.timers.clearTimeout(this.#reconnectTimer);
      this.#reconnectTimer = undefined;
    }
    this.#seq += 1;
    const id = `r${this.#seq}`;
    const frame = build(id);
    return new Promise<ServerFrame>((resolve, reject) => {
      const timer = this.#env.timers.setTimeout(() => {
        if (!this.#requests.delete(id)) return;
        reject(
          new MatchmakingError(
            this.#ready ? MatchmakingErrorCode.Timeout : MatchmakingErrorCode.Unavailable,
            this.#ready
              ? `The matchmaking service did not answer within ${this.#requestTimeoutMs} ms.`
              : `Could not reach the matchmaking service within ${this.#requestTimeoutMs} ms.`,
          ),
        );
      }, this.#requestTimeoutMs);
      this.#requests.set(id, { frame, resolve, reject, timer });
      if (this.#ready) this.#sendFrame(frame);
      else this.#connect();
    });
  }

  #settle(id: string, result: { frame: ServerFrame } | { error: MatchmakingError }): boolean {
    const pending = this.#requests.get(id);
    if (!pending) return false;
    this.#requests.delete(id);
    this.#env.timers.clearTimeout(pending.timer);
    if ('frame' in result) pending.resolve(result.frame);
    else pending.reject(result.error);
    return true;
  }

  #failAll(error: MatchmakingError): void {
    for (const id of [...this.#requests.keys()]) this.#settle(id, { error });
  }

  #sendFrame(frame: ClientFrame): void {
    const socket = this.#socket;
    if (!socket || socket.readyState !== OPEN) return;
    socket.send(JSON.stringify(frame));
  }

  // ------------------------------------------------------------------------------------------------------
  // Connection

  /** Open a connection unless one is open, opening or scheduled. */
  #connect(): void {
    if (this.#closed || this.#socket || this.#reconnectTimer !== undefined) return;
    void this.#open();
  }

  async #open(): Promise<void> {
    // Reserve the slot synchronously so concurrent callers do not open a second socket.
    const placeholder = {} as WebSocketLike;
    this.#socket = placeholder;
    let token: string | null | undefined;
    let url: string;
    try {
      url = typeof this.#o.url === 'function' ? this.#o.url() : this.#o.url;
    } catch (error) {
      if (this.#socket === placeholder) this.#socket = undefined;
      this.#failAll(toMatchmakingError(error, MatchmakingErrorCode.InvalidConfig, 'The url() option failed'));
      return;
    }
    try {
      token = await this.#o.getAccessToken();
    } catch (error) {
      if (this.#socket === placeholder) this.#socket = undefined;
      this.#authFailed(
        toMatchmakingError(error, MatchmakingErrorCode.Unauthorized, 'getAccessToken() failed'),
      );
      return;
    }
    if (this.#socket !== placeholder) return;
    if (this.#closed) {
      this.#socket = undefined;
      return;
    }
    if (!token) {
      this.#socket = undefined;
      this.#authFailed(
        new MatchmakingError(
          MatchmakingErrorCode.Unauthorized,
          'No access token: sign the user in before searching (getAccessToken() returned nothing).',
        ),
      );
      return;
    }
    let socket: WebSocketLike;
    try {
      socket = new this.#WebSocket(url);
    } catch (error) {
      this.#socket = undefined;
      this.#failAll(
        toMatchmakingError(error, MatchmakingErrorCode.InvalidConfig, `Could not open a WebSocket to ${url}`),
      );
      return;
    }
    this.#socket = socket;
    this.#ready = false;
    const helloId = `h${++this.#seq}`;
    this.#helloId = helloId;
    socket.onopen = () => {
      if (this.#socket !== socket) return;
      socket.send(JSON.stringify({ v: SERVICE_PROTOCOL_VERSION, type: 'hello', id: helloId, token }));
    };
    socket.onmessage = (event) => {
      if (this.#socket !== socket || typeof event.data !== 'string') return;
      this.#lastFrameAt = this.#env.clock.now();
      const frame = parseServerFrame(event.data);
      if (frame) this.#onFrame(frame);
    };
    socket.onerror = () => {
      // A close event always follows; it decides what to do.
    };
    socket.onclose = (event) => this.#onClose(socket, event.code);
  }

  #detachSocket(socket: WebSocketLike): void {
    socket.onopen = null;
    socket.onmessage = null;
    socket.onerror = () => {};
    socket.onclose = null;
    if (this.#socket === socket) {
      this.#socket = undefined;
      this.#ready = false;
    }
    const waiters = this.#closeWaiters;
    this.#closeWaiters = [];
    for (const waiter of waiters) waiter();
  }

  #onClose(socket: WebSocketLike, code: number): void {
    if (this.#socket !== socket) return;
    this.#detachSocket(socket);
    this.#stopHeartbeat();
    if (this.#closed) return;
    const search = this.#search;
    const needed = this.#requests.size > 0 || search?.joined === true;
    if (!needed) return;
    if (search?.joined && !search.reportedOutage) {
      search.reportedOutage = true;
      search.listener.error(
        new MatchmakingError(
          MatchmakingErrorCode.Unavailable,
          'Lost the connection to the matchmaking service; reconnecting and resuming the search.',
          { details: { closeCode: code } },
        ),
      );
    }
    const delay =
      code === ServiceCloseCode.ServiceRestart ? this.#backoff(0) : this.#backoff(this.#attempt++);
    this.#reconnectTimer = this.#env.timers.setTimeout(() => {
      this.#reconnectTimer = undefined;
      this.#connect();
    }, delay);
  }

  #backoff(attempt: number): number {
    if (this.#o.reconnectAfterMs) return Math.max(0, this.#o.reconnectAfterMs(attempt));
    const base = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)]!;
    return Math.round(base * (0.8 + 0.4 * this.#env.random()));
  }

  #authFailed(error: MatchmakingError): void {
    this.#failAll(error);
    const search = this.#search;
    if (search) {
      this.#search = undefined;
      search.listener.ended(search.info.searchId, 'error', error);
    }
  }

  #startHeartbeat(): void {
    this.#stopHeartbeat();
    this.#heartbeatTimer = this.#env.timers.setInterval(() => {
      const socket = this.#socket;
      if (!socket || !this.#ready) return;
      if (this.#env.clock.now() - this.#lastFrameAt > this.#heartbeatMs * 2) {
        // The server went silent: drop the socket; the close handler reconnects.
        try {
          socket.close(4000, 'heartbeat timeout');
        } finally {
          this.#onClose(socket, 4000);
        }
        return;
      }
      this.#seq += 1;
      this.#sendFrame({ v: SERVICE_PROTOCOL_VERSION, type: 'heartbeat', id: `b${this.#seq}` });
    }, this.#heartbeatMs);
  }

  #stopHeartbeat(): void {
    if (this.#heartbeatTimer !== undefined) this.#env.timers.clearInterval(this.#heartbeatTimer);
    this.#heartbeatTimer = undefined;
  }

  // ------------------------------------------------------------------------------------------------------
  // Frames

  #onFrame(frame: ServerFrame): void {
    if (frame.type === 'welcome') {
      this.#onWelcome(frame.id, frame.userId, frame.heartbeatIntervalMs);
      return;
    }
    if (frame.type === 'error' && frame.id !== undefined && frame.id === this.#helloId) {
      const error = fromErrorFrame(frame);
      const socket = this.#socket;
      if (socket) {
        this.#detachSocket(socket);
        socket.close(ServiceCloseCode.Normal, 'unauthorized');
      }
      this.#authFailed(error);
      return;
    }
    if (frame.id !== undefined && frame.type !== 'heartbeat') {
      const result = frame.type === 'error' ? { error: fromErrorFrame(frame) } : { frame };
      if (this.#settle(frame.id, result)) return;
    }
    const search = this.#search;
    switch (frame.type) {
      case 'queued':
        if (search && frame.searchId === search.info.searchId) search.ticketId = frame.ticketId;
        return;
      case 'matched':
        if (search && frame.searchId === search.info.searchId) {
          this.#search = undefined;
          search.listener.matched(search.info.searchId, {
            match: toMatchInfo(frame.match),
            userId: this.#userId ?? '',
          });
        }
        return;
      case 'cancelled':
        // A cancel this strategy sent is answered by its reply; ignore the push for it.
        if (search && frame.searchId === search.info.searchId && !search.cancelling) {
          this.#search = undefined;
          search.listener.ended(search.info.searchId, frame.reason);
        }
        return;
      case 'error':
        if (search) search.listener.error(fromErrorFrame(frame));
        return;
      default:
        return;
    }
  }

  #onWelcome(id: string, userId: string, heartbeatIntervalMs: number): void {
    if (id !== this.#helloId) return;
    this.#ready = true;
    this.#attempt = 0;
    this.#userId = userId;
    this.#heartbeatMs = Math.max(1_000, heartbeatIntervalMs);
    this.#startHeartbeat();
    for (const pending of this.#requests.values()) this.#sendFrame(pending.frame);
    this.#resume();
  }

  /** After a reconnect: follow the search's ticket again on the new connection. */
  #resume(): void {
    const search = this.#search;
    if (!search?.joined || search.cancelling || this.#closed || this.#resuming) return;
    const searchId = search.info.searchId;
    this.#resuming = true;
    this.#request((id) =>
      search.ticketId === undefined
        ? { v: SERVICE_PROTOCOL_VERSION, type: 'join', id, searchId, criteria: search.info.criteria }
        : {
            v: SERVICE_PROTOCOL_VERSION,
            type: 'join',
            id,
            searchId,
            criteria: search.info.criteria,
            resume: search.ticketId,
          },
    ).then(
      (reply) => {
        this.#resuming = false;
        if (this.#search !== search) return;
        search.reportedOutage = false;
        if (reply.type === 'queued') {
          search.ticketId = reply.ticketId;
        } else if (reply.type === 'matched') {
          this.#search = undefined;
          search.listener.matched(searchId, { match: toMatchInfo(reply.match), userId: this.#userId ?? '' });
        } else if (reply.type === 'cancelled') {
          this.#search = undefined;
          search.listener.ended(searchId, reply.reason);
        }
      },
      (error: unknown) => {
        this.#resuming = false;
        if (this.#search !== search || this.#closed) return;
        const failure = toMatchmakingError(error, MatchmakingErrorCode.Unavailable);
        if (
          failure.code === MatchmakingErrorCode.Unauthorized ||
          failure.code === MatchmakingErrorCode.Forbidden
        ) {
          this.#search = undefined;
          search.listener.ended(searchId, 'error', failure);
          return;
        }
        if (failure.code === MatchmakingErrorCode.Closed) return;
        // The service could not take the search back yet (its queue is down, it is draining): try again.
        search.listener.error(failure);
        if (this.#resumeTimer === undefined) {
          this.#resumeTimer = this.#env.timers.setTimeout(
            () => {
              this.#resumeTimer = undefined;
              if (this.#ready) this.#resume();
              else this.#connect();
            },
            this.#backoff(this.#attempt++),
          );
        }
      },
    );
  }
}
