import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { Cluster, Redis } from 'ioredis';
import type { Pool as PgPool } from 'pg';
import { type WebSocket, WebSocketServer } from 'ws';
import { defaultTimers, type Logger, silentLogger, type TimerHandle } from '../core/environment';
import type { SearchCriteria } from '../core/types';
import {
  type CancelFrame,
  type ClientFrame,
  type HelloFrame,
  type JoinFrame,
  parseClientFrame,
  SERVICE_PROTOCOL_VERSION,
  type ServerFrame,
  ServiceCloseCode,
  type ServiceEndReason,
  ServiceErrorCode,
  type WireMatch,
} from '../strategies/service/protocol';
import { TokenRejectedError, TokenVerifier } from './auth';
import { KeySpace } from './keys';
import { MatchPersister, type PgPoolLike } from './MatchPersister';
import {
  type MatchmakingServerOptions,
  type RedisConnectionOptions,
  type ResolvedServerOptions,
  resolveServerOptions,
} from './options';
import { RateLimiter } from './RateLimiter';
import {
  type EnqueueResult,
  freezeStoredMatch,
  type QueueEffects,
  type RedisClient,
  RedisQueue,
  type StoredMatch,
  type TicketState,
} from './RedisQueue';
import { ServiceMetrics } from './ServiceMetrics';

/** One client connection. */
interface Connection {
  readonly id: number;
  readonly socket: WebSocket;
  readonly openedAt: number;
  userId: string | undefined;
  tokenExpiresAt: number;
  lastFrameAt: number;
  /** The search this connection follows (at most one). */
  search: { readonly searchId: string; ticketId: string | undefined } | undefined;
  /** The last outcome pushed to this connection, to answer a request that raced it. */
  lastOutcome: { readonly searchId: string; readonly frame: ServerFrame } | undefined;
  /**
   * The last ticket this connection saw end (matched, cancelled or ended): the user's record may still name it
   * (records are released lazily on a Redis Cluster), and the next claim replaces such a record at once.
   */
  endedTicket: string | undefined;
  /** The tickets this connection follows locally (so closing it does not scan every ticket of the node). */
  readonly tickets: Set<string>;
  /** Frames are handled one at a time, in order. */
  chain: Promise<void>;
  closed: boolean;
}

/** A ticket some connection of this node follows. */
interface LocalTicket {
  readonly ticketId: string;
  readonly userId: string;
  c0: number;
  criteria: SearchCriteria;
  /** Connection → the search id it follows this ticket under. */
  readonly watchers: Map<Connection, string>;
}

class RequestError extends Error {
  readonly code: ServiceErrorCode;
  constructor(code: ServiceErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

const AUTH_TIMEOUT_MS = 10_000;

/** Wire form of each match (and its JSON), built once for all the frames that carry it. */
const wireMatches = new WeakMap<StoredMatch, WireMatch>();
const wireJson = new WeakMap<WireMatch, string>();

function toWireMatch(match: StoredMatch): WireMatch {
  let wire = wireMatches.get(match);
  if (!wire) {
    wire = Object.freeze({
      matchId: match.matchId,
      userIds: match.userIds,
      createdAt: new Date(match.createdAtMs).toISOString(),
      criteria: match.criteria,
    });
    wireMatches.set(match, wire);
  }
  return wire;
}

/** `JSON.stringify(frame)`, with the match's JSON serialised once per match rather than once per frame. */
export function serializeFrame(frame: ServerFrame): string {
  if (frame.type !== 'matched') return JSON.stringify(frame);
  let match = wireJson.get(frame.match);
  if (match === undefined) {
    match = JSON.stringify(frame.match);
    wireJson.set(frame.match, match);
  }
  const id = frame.id === undefined ? '' : `"id":${JSON.stringify(frame.id)},`;
  return `{"v":${frame.v},"type":"matched",${id}"searchId":${JSON.stringify(frame.searchId)},"ticketId":${JSON.stringify(frame.ticketId)},"match":${match}}`;
}

function createRedisPair(options: RedisConnectionOptions): {
  client: RedisClient;
  subscriber: RedisClient;
  owned: boolean;
} {
  if ('client' in options) {
    return {
      client: options.client,
      subscriber: options.subscriber ?? options.client.duplicate(),
      owned: false,
    };
  }
  const retryStrategy = (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000);
  if ('cluster' in options) {
    const seeds = options.cluster.map((seed) => {
      const url = new URL(seed.includes('://') ? seed : `redis://${seed}`);
      return { host: url.hostname, port: Number(url.port || 6379) };
    });
    const make = (command: boolean) =>
      new Cluster(seeds, {
        lazyConnect: true,
        enableOfflineQueue: !command,
        // Commands issued in the same tick share one write (and one read) per master: concurrent joins cost
        // one system call each way instead of one per command. Off for the subscriber (it only subscribes).
        enableAutoPipelining: command,
        clusterRetryStrategy: retryStrategy,
        redisOptions: { maxRetriesPerRequest: 1, connectTimeout: 5_000 },
      });
    return { client: make(true), subscriber: make(false), owned: true };
  }
  const make = (command: boolean) =>
    new Redis(options.url, {
      lazyConnect: true,
      enableOfflineQueue: !command,
      enableAutoPipelining: command,
      maxRetriesPerRequest: 1,
      connectTimeout: 5_000,
      retryStrategy,
    });
  return { client: make(true), subscriber: make(false), owned: true };
}

function isRedisUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return /Stream isn't writeable|Connection is closed|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|Reached the max retries|ClusterAllFailedError|Failed to refresh slots cache|enableOfflineQueue|LOADING|CLUSTERDOWN|TRYAGAIN|MASTERDOWN/i.test(
    `${error.name} ${error.message}`,
  );
}

/**
 * A matchmaking service node: a WebSocket server that authenticates Supabase users and queues their searches in
 * Redis (a single Redis or a Redis Cluster), shared by any number of nodes.
 *
 * @remarks
 * - Protocol: `docs/service-protocol.md` (frames in `supabase-matchmaker`'s `ServiceStrategy`).
 * - The user is always the access token's `sub`. Every inbound frame is validated; a bad one gets an `error`
 *   frame and changes nothing.
 * - One open ticket per user (shared by all of the user's connections, on any node); pairing, cancel, widening
 *   and expiry are single Lua scripts, so a match is made exactly once.
 * - A match reaches the nodes watching either ticket through their pub/sub channel; a node that loses Redis
 *   re-reads its tickets when it is back. When a node dies, its users reconnect to another node within
 *   `resumeGraceMs` and keep their place.
 * - Matches are written to Postgres from Redis Streams (see {@link MatchPersister}).
 * - `GET /healthz` and `GET /metrics` (Prometheus) on the same port.
 *
 * @example
 * ```ts
 * const server = await createMatchmakingServer({
 *   port: 8787,
 *   auth: { jwtSecret: process.env.SUPABASE_JWT_SECRET },
 *   redis: { url: 'redis://127.0.0.1:6379' },
 *   persistence: { databaseUrl: process.env.DATABASE_URL },
 * });
 * process.on('SIGTERM', () => server.close());
 * ```
 */
export class MatchmakingServer {
  /** This node's id. */
  readonly nodeId: string;
  /** Prometheus metrics (also served at `/metrics`). */
  readonly metrics: ServiceMetrics;
  readonly #o: ResolvedServerOptions;
  readonly #logger: Logger;
  readonly #timers = defaultTimers;
  readonly #keys: KeySpace;
  readonly #verifier: TokenVerifier;
  readonly #limiter: RateLimiter | undefined;
  readonly #connections = new Set<Connection>();
  readonly #tickets = new Map<string, LocalTicket>();
  #http: Server | undefined;
  #wss: WebSocketServer | undefined;
  #redis: RedisClient | undefined;
  #subscriber: RedisClient | undefined;
  #ownsRedis = false;
  #queue: RedisQueue | undefined;
  #persister: MatchPersister | undefined;
  #ownedPool: PgPool | undefined;
  #intervals: TimerHandle[] = [];
  #state: 'new' | 'starting' | 'listening' | 'draining' | 'closed' = 'new';
  #closing: Promise<void> | undefined;
  #redisUp = false;
  #reconcileNeeded = false;
  #sweeping: Promise<void> | undefined;
  #nextConnectionId = 1;
  #heartbeats = 0;
  #port = 0;

  constructor(options: MatchmakingServerOptions = {}) {
    this.#o = resolveServerOptions(options);
    this.nodeId = options.nodeId ?? (options.env ?? process.env).MATCHMAKER_NODE_ID ?? randomUUID();
    this.#logger = options.logger ?? silentLogger;
    // Searchers are counted when the metrics are read, not on every join, match and close (a count over every
    // connection each time made those O(connections): with 15,000 idle sockets a node sustained half the joins).
    this.metrics = new ServiceMetrics(this.#o.metricsPrefix, { searchers: () => this.#countSearchers() });
    this.#keys = new KeySpace(this.#o.keyPrefix, this.#o.shards);
    this.#verifier = new TokenVerifier(this.#o.auth);
    this.#limiter = this.#o.joinRateLimit ? new RateLimiter(this.#o.joinRateLimit) : undefined;
  }

  /** The WebSocket URL clients connect to (after {@link listen}); `0.0.0.0` is shown as `127.0.0.1`. */
  get url(): string {
    return `ws://${this.#displayHost()}:${this.#port}${this.#o.path}`;
  }

  /** Base URL of `/healthz` and `/metrics` (after {@link listen}). */
  get httpUrl(): string {
    return `http://${this.#displayHost()}:${this.#port}`;
  }

  /** The bound port (after {@link listen}). */
  get port(): number {
    return this.#port;
  }

  /** Open WebSocket connections. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  #displayHost(): string {
    const host = this.#o.host;
    if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
    return host.includes(':') ? `[${host}]` : host;
  }

  /** Connect to Redis (and Postgres), start the background work and listen. */
  async listen(): Promise<void> {
    if (this.#state !== 'new') throw new Error('listen() was already called on this MatchmakingServer.');
    this.#state = 'starting';
    try {
      await this.#connectRedis();
      await this.#startPersister();
      await this.#listenHttp();
    } catch (error) {
      this.#state = 'listening';
      await this.close({ drainTimeoutMs: 0 }).catch(() => undefined);
      throw error;
    }
    this.#state = 'listening';
    const every = (ms: number, run: () => void) => this.#intervals.push(this.#timers.setInterval(run, ms));
    every(Math.min(1_000, this.#o.heartbeatIntervalMs), () => this.#tick());
    every(Math.max(50, Math.floor(this.#o.nodeTimeoutMs / 3)), () => void this.#heartbeat());
    every(this.#o.sweepIntervalMs, () => {
      if (!this.#sweeping) this.#sweeping = this.#sweep().finally(() => (this.#sweeping = undefined));
    });
    await this.#heartbeat();
    this.#logger.info('matchmaking server listening', { nodeId: this.nodeId, url: this.url });
  }

  // ------------------------------------------------------------------------------------------------------
  // Redis

  async #connectRedis(): Promise<void> {
    const { client, subscriber, owned } = createRedisPair(this.#o.redis);
    this.#redis = client;
    this.#subscriber = subscriber;
    this.#ownsRedis = owned;
    client.on('error', (error: unknown) => this.#logger.debug('redis error', { error }));
    subscriber.on('error', (error: unknown) => this.#logger.debug('redis subscriber error', { error }));
    client.on('close', () => this.#redisDown());
    client.on('end', () => this.#redisDown());
    client.on('ready', () => this.#redisReady());
    subscriber.on('message', (_channel: string, message: string) => this.#onMessage(message));
    // Messages published while the subscriber was away are lost: re-read the tickets once it is back.
    subscriber.on('close', () => {
      if (this.#state === 'listening') this.#reconcileNeeded = true;
    });
    subscriber.on('ready', () => {
      if (this.#reconcileNeeded) void this.#reconcile();
    });
    const ready = async (c: RedisClient) => {
      if (c.status === 'wait') await c.connect();
      else if (c.status !== 'ready') await new Promise((resolve) => c.once('ready', resolve));
    };
    await Promise.all([ready(client), ready(subscriber)]);
    if (client.isCluster) {
      // Open the connection to every master now: fail fast if one is unreachable, and no socket opens later.
      await Promise.all((client as Cluster).nodes('master').map((master) => master.ping()));
    }
    await subscriber.subscribe(this.#keys.channel(this.nodeId));
    this.#queue = new RedisQueue({
      redis: client,
      keys: this.#keys,
      ticketTtlMs: this.#o.ticketTtlMs,
      endedRetentionMs: this.#o.endedRetentionMs,
      resumeGraceMs: this.#o.resumeGraceMs,
      widening: this.#o.widening,
      userRecordSlackMs: 5_000,
      pairLimit: 8,
      recordMatches: this.#o.persistence !== undefined,
    });
    this.#redisUp = true;
    this.metrics.redisUp.set(1);
  }

  #redisDown(): void {
    if (!this.#redisUp || this.#state === 'closed') return;
    this.#redisUp = false;
    this.#reconcileNeeded = true;
    this.metrics.redisUp.set(0);
    if (this.#state === 'draining') return;
    this.#logger.warn('lost the connection to Redis; searches are kept and resume when it is back');
    for (const conn of this.#connections) {
      if (conn.search) {
        this.#sendError(
          conn,
          ServiceErrorCode.Unavailable,
          'The matchmaking queue (Redis) is unreachable. Your search is kept and resumes when it is back.',
          undefined,
          conn.search.searchId,
        );
      }
    }
  }

  #redisReady(): void {
    if (this.#redisUp || this.#state === 'closed' || this.#state === 'new' || this.#state === 'starting')
      return;
    this.#redisUp = true;
    this.metrics.redisUp.set(1);
    this.#logger.info('reconnected to Redis');
    void this.#reconcile();
  }

  /**
   * After Redis came back: re-read every ticket this node follows and deliver what happened meanwhile (a match
   * whose message was lost), or re-create tickets Redis lost (a restart without persistence).
   */
  async #reconcile(): Promise<void> {
    const queue = this.#queue;
    if (!queue || !this.#redisUp || this.#state !== 'listening') return;
    this.#reconcileNeeded = false;
    try {
      await this.#subscriber!.subscribe(this.#keys.channel(this.nodeId));
    } catch (error) {
      this.#reconcileNeeded = true;
      this.#logger.warn('reconcile after Redis reconnect failed; will retry', { error });
      return;
    }
    for (const local of [...this.#tickets.values()]) {
      try {
        await this.#reconcileTicket(queue, local);
      } catch (error) {
        this.#reconcileNeeded = true;
        this.#logger.warn('could not reconcile a ticket after Redis reconnect', {
          ticketId: local.ticketId,
          error,
        });
      }
    }
  }

  async #reconcileTicket(queue: RedisQueue, local: LocalTicket): Promise<void> {
    const found = await queue.enqueue(local, { nodeId: this.nodeId, create: false });
    if (found.status === 'ok') {
      this.#applyEffects(found.effects);
      this.#deliverState(local.ticketId, found.ticket);
      return;
    }
    if (found.status === 'not_owner') return;
    // Redis lost the ticket: claim it again under the same id and enqueue time (the user keeps their place).
    let current = local;
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const claim = await queue.claim(local.userId, local.ticketId, local.criteria, local.c0);
      if (claim.status !== 'ok') return;
      if (claim.ticketId !== current.ticketId) {
        // The user's record names another ticket (another tab re-created one first): follow that one.
        current = this.#moveWatchers(current, claim.ticketId, claim.c0, claim.criteria);
      }
      const result = await queue.enqueue(
        { ticketId: claim.ticketId, userId: local.userId, c0: claim.c0, criteria: claim.criteria },
        { nodeId: this.nodeId, create: true },
      );
      if (result.status !== 'ok') return;
      this.#applyEffects(result.effects);
      if (claim.created || claim.ticketId === local.ticketId || result.ticket.state === 'waiting') {
        this.#deliverState(claim.ticketId, result.ticket);
        return;
      }
      await queue.release(local.userId, claim.ticketId);
    }
  }

  /** The user's ticket changed (Redis lost the old one and another tab re-created one first). */
  #moveWatchers(local: LocalTicket, ticketId: string, c0: number, criteria: SearchCriteria): LocalTicket {
    this.#tickets.delete(local.ticketId);
    const target = this.#localTicket(ticketId, local.userId, c0, criteria);
    for (const [conn, searchId] of local.watchers) {
      conn.tickets.delete(local.ticketId);
      conn.tickets.add(ticketId);
      target.watchers.set(conn, searchId);
      if (conn.search?.searchId === searchId) conn.search.ticketId = ticketId;
      this.#send(conn, { v: SERVICE_PROTOCOL_VERSION, type: 'queued', searchId, ticketId });
    }
    return target;
  }

  #onMessage(message: string): void {
    let parsed: { t?: unknown; match?: unknown; ticket?: unknown; reason?: unknown; by?: unknown };
    try {
      parsed = JSON.parse(message) as typeof parsed;
    } catch {
      return;
    }
    if (parsed.t === 'm' && parsed.match) {
      const match = freezeStoredMatch(parsed.match as StoredMatch);
      for (const ticketId of match.ticketIds) this.#deliverState(ticketId, { state: 'matched', match });
    } else if (parsed.t === 'e' && typeof parsed.ticket === 'string') {
      this.#deliverState(parsed.ticket, {
        state: 'ended',
        reason: (typeof parsed.reason === 'string' ? parsed.reason : 'error') as ServiceEndReason,
        by: typeof parsed.by === 'string' ? parsed.by : '',
      });
    }
  }

  /** Push a ticket's outcome to every local connection following it; nothing for `waiting`. */
  #deliverState(ticketId: string, state: TicketState): void {
    if (state.state === 'waiting') return;
    const local = this.#tickets.get(ticketId);
    if (!local) return;
    this.#tickets.delete(ticketId);
    for (const [conn, searchId] of local.watchers) {
      conn.tickets.delete(ticketId);
      const frame: ServerFrame =
        state.state === 'matched'
          ? {
              v: SERVICE_PROTOCOL_VERSION,
              type: 'matched',
              searchId,
              ticketId,
              match: toWireMatch(state.match),
            }
          : {
              v: SERVICE_PROTOCOL_VERSION,
              type: 'cancelled',
              searchId,
              ticketId,
              status: 'cancelled',
              reason: state.reason,
            };
      if (conn.search?.searchId === searchId) conn.search = undefined;
      conn.lastOutcome = { searchId, frame };
      conn.endedTicket = ticketId;
      // The connection that cancelled learns it from its answer, not from this push.
      if (state.state === 'ended' && state.by !== '' && state.by === searchId) continue;
      this.#send(conn, frame);
    }
  }

  /**
   * Count what a script call changed and deliver the matches it made to this node's connections (the scripts do
   * not publish to the node that called them). Runs after the user records were released, so a user who joins
   * again at once finds no stale record.
   */
  #applyEffects(effects: QueueEffects): void {
    for (const match of effects.made) {
      for (const ticketId of match.ticketIds) this.#deliverState(ticketId, { state: 'matched', match });
      this.metrics.matches.inc();
      for (const enqueuedAt of match.enqueuedAtMs) {
        this.metrics.waitSeconds.observe(Math.max(0, match.createdAtMs - enqueuedAt) / 1000);
      }
    }
    for (const ended of effects.ended) this.metrics.ended.inc({ reason: ended.reason });
    if (effects.made.length > 0) this.#persister?.nudge();
  }

  // ------------------------------------------------------------------------------------------------------
  // Background work

  async #startPersister(): Promise<void> {
    const persistence = this.#o.persistence;
    if (!persistence || (!persistence.pool && !persistence.databaseUrl)) {
      this.#logger.warn(
        'match persistence is off: set persistence.databaseUrl (env DATABASE_URL) to keep matches',
      );
      return;
    }
    let pool: PgPoolLike;
    if (persistence.pool) {
      pool = persistence.pool;
    } else {
      let Pool: typeof PgPool;
      try {
        ({ Pool } = (await import('pg')).default);
      } catch (cause) {
        throw new Error(
          'Match persistence needs the `pg` package: npm install pg (or pass persistence.pool, or persistence: false).',
          { cause },
        );
      }
      const owned = new Pool({ connectionString: persistence.databaseUrl, max: 2 });
      owned.on('error', (error) => this.#logger.debug('postgres pool error', { error }));
      this.#ownedPool = owned;
      pool = owned;
    }
    this.#persister = new MatchPersister({
      redis: this.#redis!,
      keys: this.#keys,
      pool,
      consumer: this.nodeId,
      logger: this.#logger,
      timers: this.#timers,
      ...(persistence.table === undefined ? {} : { table: persistence.table }),
      ...(persistence.batchSize === undefined ? {} : { batchSize: persistence.batchSize }),
      ...(persistence.pollIntervalMs === undefined ? {} : { pollIntervalMs: persistence.pollIntervalMs }),
      ...(persistence.claimIdleMs === undefined ? {} : { claimIdleMs: persistence.claimIdleMs }),
      ...(persistence.maxRetryDelayMs === undefined ? {} : { maxRetryDelayMs: persistence.maxRetryDelayMs }),
      onPersisted: (count) => this.metrics.persisted.inc(count),
      onFailure: () => this.metrics.persistFailures.inc(),
    });
    this.#persister.start();
  }

  async #heartbeat(): Promise<void> {
    if (!this.#redisUp || !this.#queue || this.#state !== 'listening') return;
    try {
      const registered = await this.#queue.heartbeat(this.nodeId);
      if (registered && this.#heartbeats > 0) {
        // Another node declared this one dead (a long pause) and released its tickets: take them back.
        this.#logger.warn('this node had been declared dead; re-reading its tickets');
        this.#reconcileNeeded = true;
      }
      if (this.#reconcileNeeded) await this.#reconcile();
      this.#heartbeats += 1;
    } catch (error) {
      this.#logger.debug('node heartbeat failed', { error });
    }
  }

  async #sweep(): Promise<void> {
    const queue = this.#queue;
    if (!queue || !this.#redisUp || this.#state !== 'listening') return;
    try {
      if (!(await queue.acquireSweeperLease(this.nodeId, this.#o.sweepIntervalMs * 3 + 1_000))) return;
      const sweeps: Promise<void>[] = [];
      for (let bucket = 0; bucket < this.#o.shards; bucket += 1) {
        sweeps.push(queue.sweep(bucket, this.nodeId).then((effects) => this.#applyEffects(effects)));
      }
      await Promise.all(sweeps);
      for (const node of await queue.staleNodes(this.#o.nodeTimeoutMs)) {
        if (node === this.nodeId) continue;
        const released = await queue.forgetNode(node);
        this.#logger.warn('a node stopped heartbeating; its tickets now wait for their users to reconnect', {
          node,
          tickets: released,
        });
      }
    } catch (error) {
      this.#logger.debug('sweep failed', { error });
    }
  }

  /** Close connections that never authenticated, whose token expired, or that went silent. */
  #tick(): void {
    const now = Date.now();
    const idleLimit = this.#o.heartbeatIntervalMs * 2.5;
    for (const conn of this.#connections) {
      if (conn.closed) continue;
      if (conn.userId === undefined && now - conn.openedAt > AUTH_TIMEOUT_MS) {
        conn.socket.close(ServiceCloseCode.Idle, 'no hello');
      } else if (conn.userId !== undefined && now >= conn.tokenExpiresAt) {
        this.#sendError(
          conn,
          ServiceErrorCode.Unauthorized,
          'The access token expired; reconnect with a fresh one.',
        );
        conn.socket.close(ServiceCloseCode.Unauthorized, 'token expired');
      } else if (now - conn.lastFrameAt > idleLimit) {
        conn.socket.terminate();
      }
    }
    this.#limiter?.prune(now);
  }

  // ------------------------------------------------------------------------------------------------------
  // HTTP and WebSocket

  async #listenHttp(): Promise<void> {
    const http = createServer((req, res) => void this.#onHttp(req, res));
    const wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.#o.maxFrameBytes * 16,
      perMessageDeflate: false,
    });
    http.on('upgrade', (req, socket, head) => this.#onUpgrade(wss, req, socket, head));
    wss.on('connection', (socket) => this.#onConnection(socket));
    this.#http = http;
    this.#wss = wss;
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(this.#o.port, this.#o.host, () => {
        http.off('error', reject);
        resolve();
      });
    });
    this.#port = (http.address() as AddressInfo).port;
  }

  async #onHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') {
      const ok = this.#state === 'listening' && this.#redisUp;
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          status: ok ? 'ok' : this.#state === 'listening' ? 'degraded' : this.#state,
          nodeId: this.nodeId,
          redis: this.#redisUp ? 'up' : 'down',
          connections: this.#connections.size,
        }),
      );
      return;
    }
    if (req.method === 'GET' && path === '/metrics') {
      try {
        const body = await this.metrics.render();
        res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
        res.end(body);
      } catch (error) {
        res.writeHead(500);
        res.end(String(error));
      }
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'not_found', message: `Connect a WebSocket to ${this.#o.path}` }));
  }

  #onUpgrade(wss: WebSocketServer, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = (req.url ?? '/').split('?')[0];
    const refuse = (status: number, text: string) => {
      socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (path !== this.#o.path) {
      refuse(404, 'Not Found');
      return;
    }
    if (this.#state !== 'listening' || this.#connections.size >= this.#o.maxConnections) {
      refuse(503, 'Service Unavailable');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  }

  #onConnection(socket: WebSocket): void {
    const now = Date.now();
    const conn: Connection = {
      id: this.#nextConnectionId++,
      socket,
      openedAt: now,
      userId: undefined,
      tokenExpiresAt: 0,
      lastFrameAt: now,
      search: undefined,
      lastOutcome: undefined,
      endedTicket: undefined,
      tickets: new Set(),
      chain: Promise.resolve(),
      closed: false,
    };
    this.#connections.add(conn);
    this.metrics.connections.set(this.#connections.size);
    socket.on('message', (data, isBinary) => this.#onFrame(conn, data, isBinary));
    socket.on('error', (error) => this.#logger.debug('socket error', { connection: conn.id, error }));
    socket.on('close', () => this.#onClose(conn));
  }

  #onFrame(conn: Connection, data: WebSocket.RawData, isBinary: boolean): void {
    conn.lastFrameAt = Date.now();
    const size = Array.isArray(data)
      ? data.reduce((sum, part) => sum + part.length, 0)
      : data instanceof ArrayBuffer
        ? data.byteLength
        : data.length;
    if (size > this.#o.maxFrameBytes) {
      this.metrics.frames.inc({ type: 'invalid' });
      this.#sendError(
        conn,
        ServiceErrorCode.FrameTooLarge,
        `Frames may be at most ${this.#o.maxFrameBytes} bytes; this one has ${size}.`,
      );
      return;
    }
    if (isBinary) {
      this.metrics.frames.inc({ type: 'invalid' });
      this.#sendError(conn, ServiceErrorCode.InvalidFrame, 'Send JSON text frames, not binary ones.');
      return;
    }
    // (Buffer.from(buffer) would copy it first.)
    const text = Array.isArray(data)
      ? Buffer.concat(data).toString('utf8')
      : Buffer.isBuffer(data)
        ? data.toString('utf8')
        : Buffer.from(data).toString('utf8');
    const parsed = parseClientFrame(text);
    if (!parsed.ok) {
      this.metrics.frames.inc({ type: 'invalid' });
      this.#sendError(conn, parsed.code, parsed.message, parsed.id);
      return;
    }
    const frame = parsed.frame;
    this.metrics.frames.inc({ type: frame.type });
    if (frame.type === 'heartbeat') {
      this.#send(conn, { v: SERVICE_PROTOCOL_VERSION, type: 'heartbeat', id: frame.id });
      return;
    }
    conn.chain = conn.chain
      .then(() => this.#handle(conn, frame))
      .catch((error: unknown) => {
        const known = error instanceof RequestError;
        const code = known
          ? error.code
          : isRedisUnavailable(error)
            ? ServiceErrorCode.Unavailable
            : ServiceErrorCode.Internal;
        const message = known
          ? error.message
          : code === ServiceErrorCode.Unavailable
            ? 'The matchmaking queue (Redis) is unreachable; retry shortly.'
            : 'Internal error; retry shortly.';
        if (!known) this.#logger.error('request failed', { connection: conn.id, type: frame.type, error });
        this.#sendError(conn, code, message, frame.id);
      });
  }

  async #handle(conn: Connection, frame: ClientFrame): Promise<void> {
    if (conn.closed) return;
    switch (frame.type) {
      case 'hello':
        return this.#hello(conn, frame);
      case 'join':
        return this.#join(conn, frame);
      case 'cancel':
        return this.#cancel(conn, frame);
      default:
        return;
    }
  }

  #onClose(conn: Connection): void {
    conn.closed = true;
    this.#connections.delete(conn);
    this.metrics.connections.set(this.#connections.size);
    // Wait for the frame in progress (a join may be about to register a ticket), then let go of the ticket.
    void conn.chain.then(() => this.#detach(conn, true));
  }

  // ------------------------------------------------------------------------------------------------------
  // Requests

  async #hello(conn: Connection, frame: HelloFrame): Promise<void> {
    let verified: Awaited<ReturnType<TokenVerifier['verify']>>;
    try {
      verified = await this.#verifier.verify(frame.token);
    } catch (error) {
      const message =
        error instanceof TokenRejectedError ? error.message : 'The access token could not be verified.';
      this.#sendError(conn, ServiceErrorCode.Unauthorized, message, frame.id);
      if (conn.userId === undefined) conn.socket.close(ServiceCloseCode.Unauthorized, 'unauthorized');
      return;
    }
    if (conn.userId !== undefined && conn.userId !== verified.userId) {
      throw new RequestError(
        ServiceErrorCode.Forbidden,
        'A connection stays with one user; open a new one to switch.',
      );
    }
    if (this.#state !== 'listening')
      throw new RequestError(ServiceErrorCode.Draining, 'This node is shutting down.');
    conn.userId = verified.userId;
    conn.tokenExpiresAt = verified.expiresAtMs;
    this.#send(conn, {
      v: SERVICE_PROTOCOL_VERSION,
      type: 'welcome',
      id: frame.id,
      userId: verified.userId,
      nodeId: this.nodeId,
      heartbeatIntervalMs: this.#o.heartbeatIntervalMs,
    });
  }

  #requireUser(conn: Connection): string {
    if (conn.userId === undefined) {
      throw new RequestError(
        ServiceErrorCode.Unauthenticated,
        'Send a hello frame with your access token first.',
      );
    }
    if (this.#state !== 'listening') {
      throw new RequestError(ServiceErrorCode.Draining, 'This node is shutting down; reconnect and resume.');
    }
    if (!this.#redisUp || !this.#queue) {
      throw new RequestError(
        ServiceErrorCode.Unavailable,
        'The matchmaking queue (Redis) is unreachable; retry shortly.',
      );
    }
    return conn.userId;
  }

  async #join(conn: Connection, frame: JoinFrame): Promise<void> {
    const userId = this.#requireUser(conn);
    const queue = this.#queue!;
    if (this.#limiter && !this.#limiter.take(userId, Date.now())) {
      throw new RequestError(
        ServiceErrorCode.RateLimited,
        'Too many joins; wait a moment before searching again.',
      );
    }
    let resume = frame.resume;
    if (conn.search && conn.search.searchId !== frame.searchId) {
      // A connection follows one search: a new one replaces the old (the ticket, shared, is not cancelled).
      await this.#detach(conn, true);
    } else if (conn.search?.ticketId) {
      resume ??= conn.search.ticketId;
    }
    conn.search = { searchId: frame.searchId, ticketId: undefined };

    let outcome: { ticketId: string; result: Extract<EnqueueResult, { status: 'ok' }> } | undefined;
    try {
      if (resume !== undefined && this.#keys.bucketOfTicket(resume) !== undefined) {
        this.#watchLocal(conn, frame.searchId, resume, userId, 0, frame.criteria);
        const result = await queue.enqueue(
          { ticketId: resume, userId, c0: 0, criteria: frame.criteria },
          { nodeId: this.nodeId, create: false },
        );
        if (result.status === 'not_owner') {
          this.#unwatchLocal(conn, resume);
          throw new RequestError(ServiceErrorCode.Forbidden, 'That ticket belongs to another user.');
        }
        if (result.status === 'ok') outcome = { ticketId: resume, result };
        else this.#unwatchLocal(conn, resume);
      }
      for (let attempt = 0; !outcome && attempt < 4; attempt += 1) {
        const chain = queue.chainOf(frame.criteria);
        const fresh = `${this.#keys.bucketOf(chain)}.${randomUUID().replaceAll('-', '')}`;
        // The shared join limit counts a join once (a retry after a stale record takes no token).
        const limit = attempt === 0 ? this.#o.joinRateLimit : undefined;
        let claim: Awaited<ReturnType<RedisQueue['claim']>>;
        if (queue.oneScriptJoins) {
          // Standalone Redis: claim, create, enqueue, pair and release in one script call.
          this.#watchLocal(conn, frame.searchId, fresh, userId, 0, frame.criteria);
          const joined = await queue.join(userId, fresh, frame.criteria, this.nodeId, limit, chain);
          if (joined.status === 'ok' && joined.created) {
            outcome = { ticketId: fresh, result: joined.enqueued };
            break;
          }
          // Rate limited, or the user already has a ticket (followed below, as after a claim).
          this.#unwatchLocal(conn, fresh);
          claim = joined;
        } else {
          claim = await queue.claim(userId, fresh, frame.criteria, undefined, limit, conn.endedTicket);
        }
        if (claim.status === 'rate_limited') {
          throw new RequestError(
            ServiceErrorCode.RateLimited,
            'Too many joins; wait a moment before searching again.',
          );
        }
        this.#watchLocal(conn, frame.searchId, claim.ticketId, userId, claim.c0, claim.criteria);
        const result = await queue.enqueue(
          { ticketId: claim.ticketId, userId, c0: claim.c0, criteria: claim.criteria },
          { nodeId: this.nodeId, create: true },
        );
        if (result.status === 'ok' && (claim.created || result.ticket.state === 'waiting')) {
          outcome = { ticketId: claim.ticketId, result };
          break;
        }
        // The user's record points at a ticket that already ended (a stale record): drop it and claim again.
        this.#unwatchLocal(conn, claim.ticketId);
        if (result.status === 'ok') this.#applyEffects(result.effects);
        await queue.release(userId, claim.ticketId);
      }
    } catch (error) {
      if (conn.search?.searchId === frame.searchId && conn.search.ticketId === undefined) {
        await this.#detach(conn, true);
      }
      throw error;
    }
    if (!outcome) {
      await this.#detach(conn, true);
      throw new RequestError(ServiceErrorCode.Unavailable, 'Could not reserve a ticket; retry shortly.');
    }
    const { ticketId, result } = outcome;
    const state = result.ticket;
    // A search that is over is answered below (with the request's id): this connection stops following its
    // ticket before the matches of this call are delivered to the others (its partner, its other tabs).
    if (state.state !== 'waiting') this.#unwatchLocal(conn, ticketId);
    this.#applyEffects(result.effects);
    const local = this.#tickets.get(ticketId);
    if (local) {
      local.c0 = result.c0;
      local.criteria = result.criteria;
    }
    if (conn.closed) {
      await this.#detach(conn, true);
      return;
    }
    // The outcome may already have been pushed (a match arriving before this answer): answer with it again.
    const pushed = conn.lastOutcome?.searchId === frame.searchId ? conn.lastOutcome.frame : undefined;
    if (conn.search?.searchId !== frame.searchId && pushed) {
      this.#send(conn, { ...pushed, id: frame.id } as ServerFrame);
      return;
    }
    if (state.state === 'waiting') {
      if (conn.search?.searchId === frame.searchId) conn.search.ticketId = ticketId;
      this.#send(conn, {
        v: SERVICE_PROTOCOL_VERSION,
        type: 'queued',
        id: frame.id,
        searchId: frame.searchId,
        ticketId,
      });
      return;
    }
    conn.search = undefined;
    conn.endedTicket = ticketId;
    if (state.state === 'matched') {
      this.#send(conn, {
        v: SERVICE_PROTOCOL_VERSION,
        type: 'matched',
        id: frame.id,
        searchId: frame.searchId,
        ticketId,
        match: toWireMatch(state.match),
      });
    } else {
      this.#send(conn, {
        v: SERVICE_PROTOCOL_VERSION,
        type: 'cancelled',
        id: frame.id,
        searchId: frame.searchId,
        ticketId,
        status: 'not_searching',
        reason: state.reason,
      });
    }
  }

  async #cancel(conn: Connection, frame: CancelFrame): Promise<void> {
    const userId = this.#requireUser(conn);
    const own = conn.search?.searchId === frame.searchId ? conn.search.ticketId : undefined;
    const ticketId = own ?? frame.ticketId;
    const reply = (status: 'cancelled' | 'not_searching', reason: ServiceEndReason) =>
      this.#send(conn, {
        v: SERVICE_PROTOCOL_VERSION,
        type: 'cancelled',
        id: frame.id,
        searchId: frame.searchId,
        ...(ticketId === undefined ? {} : { ticketId }),
        status,
        reason,
      });
    if (ticketId === undefined || this.#keys.bucketOfTicket(ticketId) === undefined) {
      if (conn.search?.searchId === frame.searchId) conn.search = undefined;
      const pushed = conn.lastOutcome?.searchId === frame.searchId ? conn.lastOutcome.frame : undefined;
      if (pushed?.type === 'matched') this.#send(conn, { ...pushed, id: frame.id });
      else reply('not_searching', pushed?.type === 'cancelled' ? pushed.reason : 'user');
      return;
    }
    // Stop following first, so the "ended" push for this cancel does not reach the connection that asked.
    const searchId = frame.searchId;
    const wasWatching = this.#unwatchLocal(conn, ticketId);
    let result: Awaited<ReturnType<RedisQueue['cancel']>>;
    try {
      result = await this.#queue!.cancel(ticketId, userId, searchId, 'user');
    } catch (error) {
      if (wasWatching) this.#watchLocal(conn, searchId, ticketId, userId, 0, {});
      throw error;
    }
    if (result.status === 'not_owner') {
      if (wasWatching) this.#watchLocal(conn, searchId, ticketId, userId, 0, {});
      throw new RequestError(ServiceErrorCode.Forbidden, 'That ticket belongs to another user.');
    }
    if (conn.search?.searchId === searchId) conn.search = undefined;
    conn.endedTicket = ticketId;
    if (result.status === 'matched') {
      this.#send(conn, {
        v: SERVICE_PROTOCOL_VERSION,
        type: 'matched',
        id: frame.id,
        searchId,
        ticketId,
        match: toWireMatch(result.match),
      });
    } else if (result.status === 'cancelled') {
      this.metrics.ended.inc({ reason: 'user' });
      reply('cancelled', 'user');
    } else {
      reply('not_searching', result.reason ?? 'user');
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Local bookkeeping

  #localTicket(ticketId: string, userId: string, c0: number, criteria: SearchCriteria): LocalTicket {
    let local = this.#tickets.get(ticketId);
    if (!local) {
      local = { ticketId, userId, c0, criteria, watchers: new Map() };
      this.#tickets.set(ticketId, local);
    }
    return local;
  }

  /** Follow a ticket from this connection. Registered before the script runs, so no push can be missed. */
  #watchLocal(
    conn: Connection,
    searchId: string,
    ticketId: string,
    userId: string,
    c0: number,
    criteria: SearchCriteria,
  ): void {
    const local = this.#localTicket(ticketId, userId, c0, criteria);
    local.watchers.set(conn, searchId);
    conn.tickets.add(ticketId);
  }

  /** Stop following a ticket from this connection (locally only). True when it was following it. */
  #unwatchLocal(conn: Connection, ticketId: string): boolean {
    const local = this.#tickets.get(ticketId);
    if (!local) return false;
    const had = local.watchers.delete(conn);
    conn.tickets.delete(ticketId);
    if (local.watchers.size === 0) this.#tickets.delete(ticketId);
    return had;
  }

  /**
   * The connection no longer follows its search (closed, or replaced by another search). When it was this
   * node's last connection on the ticket, tell Redis, which starts the ticket's grace window if no node is left.
   */
  async #detach(conn: Connection, unwatchRemote: boolean): Promise<void> {
    const search = conn.search;
    conn.search = undefined;
    const ticketIds = [...conn.tickets];
    conn.tickets.clear();
    if (search?.ticketId && !ticketIds.includes(search.ticketId)) ticketIds.push(search.ticketId);
    for (const ticketId of ticketIds) {
      const local = this.#tickets.get(ticketId);
      local?.watchers.delete(conn);
      if (local && local.watchers.size > 0) continue;
      this.#tickets.delete(ticketId);
      if (unwatchRemote && this.#redisUp && this.#queue) {
        await this.#queue.unwatch(ticketId, this.nodeId).catch((error: unknown) => {
          this.#logger.debug('unwatch failed', { ticketId, error });
        });
      }
    }
  }

  /** Connections following a search. O(connections): only called when the metrics are read. */
  #countSearchers(): number {
    let count = 0;
    for (const conn of this.#connections) if (conn.search) count += 1;
    return count;
  }

  #send(conn: Connection, frame: ServerFrame): void {
    if (conn.socket.readyState !== conn.socket.OPEN) return;
    conn.socket.send(serializeFrame(frame));
  }

  #sendError(
    conn: Connection,
    code: ServiceErrorCode,
    message: string,
    id?: string,
    searchId?: string,
  ): void {
    this.metrics.errors.inc({ code });
    this.#send(conn, {
      v: SERVICE_PROTOCOL_VERSION,
      type: 'error',
      ...(id === undefined ? {} : { id }),
      code,
      message,
      ...(searchId === undefined ? {} : { searchId }),
    });
  }

  // ------------------------------------------------------------------------------------------------------
  // Shutdown

  /**
   * Graceful shutdown: stop accepting connections, finish requests in flight, hand this node's tickets back
   * (they keep their place for `resumeGraceMs` while their users reconnect to another node), close the sockets
   * with 1012 (clients reconnect and resume), flush the persister, then release Redis and Postgres. Idempotent.
   */
  close(options: { readonly drainTimeoutMs?: number } = {}): Promise<void> {
    this.#closing ??= this.#shutdown(options.drainTimeoutMs ?? this.#o.drainTimeoutMs);
    return this.#closing;
  }

  async #shutdown(drainTimeoutMs: number): Promise<void> {
    const wasListening = this.#state === 'listening';
    this.#state = 'draining';
    for (const handle of this.#intervals) this.#timers.clearInterval(handle);
    this.#intervals = [];
    const http = this.#http;
    const httpClosed = http ? new Promise<void>((resolve) => http.close(() => resolve())) : Promise.resolve();
    const withTimeout = async (work: Promise<unknown>, ms: number) => {
      let timer: TimerHandle | undefined;
      await Promise.race([
        work.catch(() => undefined),
        new Promise<void>((resolve) => {
          timer = this.#timers.setTimeout(resolve, ms);
        }),
      ]);
      this.#timers.clearTimeout(timer);
    };
    await withTimeout(Promise.all([...this.#connections].map((conn) => conn.chain)), drainTimeoutMs);
    await withTimeout(this.#sweeping ?? Promise.resolve(), drainTimeoutMs);

    const queue = this.#queue;
    if (queue && this.#redisUp && wasListening) {
      const tickets = [...this.#tickets.keys()];
      await withTimeout(
        Promise.all(tickets.map((ticketId) => queue.unwatch(ticketId, this.nodeId))),
        drainTimeoutMs,
      );
      await withTimeout(
        (async () => {
          await queue.releaseSweeperLease(this.nodeId);
          await this.#redis!.zrem(this.#keys.nodes(), this.nodeId);
        })(),
        drainTimeoutMs,
      );
    }
    this.#tickets.clear();

    const sockets = [...this.#connections].map(
      (conn) =>
        new Promise<void>((resolve) => {
          if (conn.socket.readyState === conn.socket.CLOSED) return resolve();
          conn.socket.once('close', () => resolve());
          conn.socket.close(ServiceCloseCode.ServiceRestart, 'node shutting down; reconnect and resume');
        }),
    );
    await withTimeout(Promise.all(sockets), Math.min(drainTimeoutMs, 2_000));
    for (const conn of this.#connections) conn.socket.terminate();
    this.#wss?.close();

    await this.#persister?.stop(this.#redisUp ? drainTimeoutMs : 0);
    await this.#ownedPool?.end().catch(() => undefined);
    const subscriber = this.#subscriber;
    const redis = this.#redis;
    this.#state = 'closed';
    if (this.#ownsRedis) {
      for (const client of [subscriber, redis]) {
        if (!client) continue;
        await withTimeout(client.quit(), 1_000);
        client.disconnect();
      }
    } else {
      await subscriber?.unsubscribe(this.#keys.channel(this.nodeId)).catch(() => undefined);
      if (
        subscriber &&
        subscriber !== redis &&
        !('subscriber' in this.#o.redis && this.#o.redis.subscriber)
      ) {
        subscriber.disconnect();
      }
    }
    this.metrics.redisUp.set(0);
    await withTimeout(httpClosed, 1_000);
    this.#logger.info('matchmaking server stopped', { nodeId: this.nodeId });
  }
}

/**
 * Create a {@link MatchmakingServer} and start it (connects to Redis, starts persistence, listens).
 *
 * @example
 * ```ts
 * const server = await createMatchmakingServer({ port: 0, auth: { jwtSecret }, redis: { url: 'redis://127.0.0.1:6379' } });
 * console.log(server.url); // ws://127.0.0.1:54321/v1/matchmaking
 * ```
 */
export async function createMatchmakingServer(
  options: MatchmakingServerOptions = {},
): Promise<MatchmakingServer> {
  const server = new MatchmakingServer(options);
  await server.listen();
  return server;
}
