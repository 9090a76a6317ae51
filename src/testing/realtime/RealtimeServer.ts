/**
 * The Realtime half of the local Supabase-compatible stack: a server that speaks Supabase Realtime's wire
 * protocol (Phoenix channels, serializers 1.0.0 and 2.0.0) well enough for the unmodified supabase-js
 * client, plus the HTTP broadcast API. It reaches the database only through a
 * {@link RealtimeDatabaseBridge}.
 *
 * Behaviour follows the protocol spec (`realtime-protocol.md`) and the Realtime server it describes:
 * connect-time token checks answered as HTTP errors after a delay, joins checked in the server's order with
 * its reason strings and a delay before error replies, presence, broadcast (binary for 2.0.0 receivers),
 * `postgres_changes` with PostgREST filters and per-subscriber RLS, private channels, Broadcast from the
 * Database, token expiry, and the plan quotas.
 *
 * @packageDocumentation
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { type WebSocket, WebSocketServer } from 'ws';
import type {
  DatabaseBroadcast,
  JwtClaims,
  JwtFailureKind,
  RealtimeDatabaseBridge,
  RowChange,
} from '../internal/contracts';
import type { StackCounters } from '../StackCounters';
import {
  isObject,
  jsonByteSize,
  type OutboundBroadcast,
  payloadTooLarge,
  type RealtimeContext,
  roomKey,
  type TenantRates,
  type TokenCheck,
} from './context';
import { PresenceTracker } from './PresenceTracker';
import { bindingWants, changeData, changeError } from './postgresChanges';
import { canonicalJson } from './postgresFilter';
import { type RealtimeQuotas, resolveQuotas } from './quotas';
import { RateCounter } from './RateCounter';
import type { RealtimeChannel } from './RealtimeChannel';
import { RealtimeSocket } from './RealtimeSocket';
import {
  encodeMessage,
  encodeUserBroadcast,
  negotiateSerializer,
  type SerializerVersion,
} from './serializer';

/** Timer functions, injectable for tests. Defaults call the globals (so fake timers apply). */
export interface RealtimeTimers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Delays the real server adds before error answers. */
export interface RealtimeErrorDelays {
  /** Before a join error reply (`CHANNEL_ERROR_BACKOFF_MS`). @defaultValue 5000 */
  readonly joinErrorMs?: number;
  /** Before an HTTP error answering a WebSocket upgrade. @defaultValue 2000 */
  readonly connectErrorMs?: number;
}

/** Options of {@link RealtimeServer}. */
export interface RealtimeServerOptions {
  /** The database half. */
  readonly bridge: RealtimeDatabaseBridge;
  /**
   * Verify a JWT as the Realtime server does (signature, expiry, integer `exp` and a `role` claim).
   * Throws an error with a `kind: JwtFailureKind` property (and optionally `expiredSecondsAgo`).
   */
  verifyJwt(token: string): Promise<JwtClaims>;
  /** Counters shared by the stack. */
  readonly counters: StackCounters;
  /** Tenant limits; missing ones are unlimited. See `REALTIME_PLANS`. @defaultValue unlimited */
  readonly quotas?: Partial<RealtimeQuotas>;
  /** Clock in epoch milliseconds (token expiry, rate averages, presence windows). @defaultValue Date.now */
  readonly clock?: () => number;
  /** Timer functions. @defaultValue the globals */
  readonly timers?: RealtimeTimers;
  /** Delays before error answers; tests shorten them. */
  readonly errorDelays?: RealtimeErrorDelays;
  /**
   * How long after a join the `postgres_changes` subscription becomes active and "Subscribed to PostgreSQL"
   * is sent. Changes committed before that are not delivered (spec trap 6). @defaultValue 100
   */
  readonly postgresSubscribeDelayMs?: number;
  /** A socket with no inbound data for this long is closed (code 1000). @defaultValue 60000 */
  readonly idleTimeoutMs?: number;
  /** The tenant allows private channels only (`PrivateOnly`). @defaultValue false */
  readonly privateOnly?: boolean;
  /**
   * Gateway emulation: map an API key (for example an opaque `sb_publishable_...` key) to the JWT the
   * gateway would forward. Return undefined to use the key as is.
   */
  readonly apiKeyToJwt?: (apiKey: string) => string | undefined;
  /** Debug log. @defaultValue silent */
  readonly logger?: (message: string, detail?: unknown) => void;
}

const WEBSOCKET_PATH = '/realtime/v1/websocket';
const API_PREFIX = '/realtime/v1/';
const MAX_FRAME_BYTES = 5_000_000;
const MAX_BODY_BYTES = 8_000_000;
const CLOSE_GRACE_MS = 300;

const defaultTimers: RealtimeTimers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`HTTP ${status}`);
  }
}

/**
 * A Supabase Realtime emulator for tests. Mount it on an HTTP server:
 *
 * @example
 * ```ts
 * const realtime = new RealtimeServer({ bridge, verifyJwt: jwt.verify, counters });
 * const server = http.createServer(async (req, res) => {
 *   if (await realtime.handleHttp(req, res)) return;
 *   // ... other routes
 * });
 * server.on('upgrade', (req, socket, head) => realtime.handleUpgrade(req, socket, head));
 * ```
 */
export class RealtimeServer {
  readonly #bridge: RealtimeDatabaseBridge;
  readonly #verifyJwt: (token: string) => Promise<JwtClaims>;
  readonly #counters: StackCounters;
  readonly #quotas: RealtimeQuotas;
  readonly #clock: () => number;
  readonly #timers: RealtimeTimers;
  readonly #connectErrorMs: number;
  readonly #apiKeyToJwt: ((apiKey: string) => string | undefined) | undefined;
  readonly #logger: ((message: string, detail?: unknown) => void) | undefined;
  readonly #wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_FRAME_BYTES,
    perMessageDeflate: false,
  });
  readonly #sockets = new Set<RealtimeSocket>();
  readonly #users = new Set<RealtimeSocket>();
  readonly #rooms = new Map<string, Set<RealtimeChannel>>();
  readonly #postgresChannels = new Set<RealtimeChannel>();
  readonly #pendingTimers = new Set<unknown>();
  readonly #pendingUpgrades = new Set<Duplex>();
  readonly #rates: TenantRates;
  readonly #context: RealtimeContext;
  readonly #unsubscribe: Array<() => void>;
  #changeQueue: Promise<void> = Promise.resolve();
  #closing = false;
  #closed: Promise<void> | undefined;

  constructor(options: RealtimeServerOptions) {
    this.#bridge = options.bridge;
    this.#verifyJwt = options.verifyJwt;
    this.#counters = options.counters;
    this.#quotas = resolveQuotas(options.quotas);
    this.#clock = options.clock ?? (() => Date.now());
    this.#timers = options.timers ?? defaultTimers;
    this.#connectErrorMs = options.errorDelays?.connectErrorMs ?? 2000;
    this.#apiKeyToJwt = options.apiKeyToJwt;
    this.#logger = options.logger;
    const clock = this.#clock;
    this.#rates = {
      joins: new RateCounter(clock, { limit: this.#quotas.maxJoinsPerSecond }),
      events: new RateCounter(clock, { limit: this.#quotas.maxEventsPerSecond }),
      dbEvents: new RateCounter(clock, { limit: this.#quotas.maxEventsPerSecond }),
      presence: new RateCounter(clock, { limit: this.#quotas.maxPresenceEventsPerSecond }),
    };
    const server = this;
    const rooms = this.#rooms;
    this.#context = {
      bridge: this.#bridge,
      counters: this.#counters,
      quotas: this.#quotas,
      rates: this.#rates,
      presence: new PresenceTracker<RealtimeChannel>(),
      joinErrorMs: options.errorDelays?.joinErrorMs ?? 5000,
      postgresSubscribeDelayMs: options.postgresSubscribeDelayMs ?? 100,
      idleTimeoutMs: options.idleTimeoutMs ?? 60_000,
      privateOnly: options.privateOnly ?? false,
      get closing() {
        return server.#closing;
      },
      now: clock,
      schedule: (ms, callback) => this.#schedule(ms, callback),
      delay: (ms) => new Promise((resolve) => this.#schedule(ms, () => resolve())),
      checkToken: (token) => this.#checkToken(token),
      log: (message, detail) => this.#log(message, detail),
      isUser: (socket) => this.#users.has(socket),
      userCount: () => this.#users.size,
      addUser: (socket) => {
        if (!socket.closed) this.#users.add(socket);
      },
      addToRoom: (channel) => {
        let members = rooms.get(channel.room);
        if (!members) {
          members = new Set();
          rooms.set(channel.room, members);
        }
        members.add(channel);
      },
      removeFromRoom: (channel) => {
        const members = rooms.get(channel.room);
        members?.delete(channel);
        if (members?.size === 0) rooms.delete(channel.room);
      },
      fanOutBroadcast: (room, message, exclude) => this.#fanOutBroadcast(room, message, exclude),
      fanOutPresenceDiff: (room, diff) => {
        let deliveries = 0;
        const frames = new Map<SerializerVersion, string>();
        for (const channel of [...(rooms.get(room) ?? [])]) {
          if (channel.state !== 'joined' || !channel.canReceivePresence) continue;
          const vsn = channel.socket.vsn;
          let frame = frames.get(vsn);
          if (frame === undefined) {
            frame = encodeMessage(vsn, {
              joinRef: null,
              ref: null,
              topic: channel.topic,
              event: 'presence_diff',
              payload: diff,
            });
            frames.set(vsn, frame);
          }
          channel.socket.sendFrame('presence_diff', frame);
          deliveries += 1;
        }
        this.#rates.presence.add(deliveries);
      },
      activatePostgres: (channel) => {
        if (channel.state === 'joined') this.#postgresChannels.add(channel);
      },
      deactivatePostgres: (channel) => {
        this.#postgresChannels.delete(channel);
      },
      socketClosed: (socket) => {
        if (this.#sockets.delete(socket)) this.#counters.connectionsOpen -= 1;
        this.#users.delete(socket);
      },
    };
    this.#unsubscribe = [
      this.#bridge.onChange((change) => this.#onChange(change)),
      this.#bridge.onBroadcast((message) => this.#onDatabaseBroadcast(message)),
    ];
  }

  /** Open WebSocket connections. */
  get connectionCount(): number {
    return this.#sockets.size;
  }

  /**
   * Handle an HTTP upgrade for `/realtime/v1/websocket` (unknown query parameters are ignored). The connect
   * token comes from the `x-api-key` header, else the `apikey` query parameter. Refusals are HTTP errors with
   * a JSON body `{"error": ...}`, sent after the connect error delay. Other paths get a 404.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname.replace(/\/+$/, '');
    if (path !== WEBSOCKET_PATH) {
      writeRawResponse(socket, 404, { error: 'Not Found' });
      return;
    }
    if (this.#closing) {
      writeRawResponse(socket, 503, { error: 'Realtime is restarting, please standby' });
      return;
    }
    const vsn = negotiateSerializer(url.searchParams.get('vsn'));
    if (vsn === undefined) {
      // Phoenix refuses a serializer version it cannot match with a bare 403.
      writeRawResponse(socket, 403, undefined);
      return;
    }
    const header = req.headers['x-api-key'];
    const token = (Array.isArray(header) ? header[0] : header) ?? url.searchParams.get('apikey');
    this.#pendingUpgrades.add(socket);
    socket.once('close', () => this.#pendingUpgrades.delete(socket));
    void this.#connect(req, socket, head, vsn, token ?? undefined).catch((error: unknown) => {
      this.#log('upgrade failed', error);
      this.#pendingUpgrades.delete(socket);
      if (!socket.destroyed) writeRawResponse(socket, 500, { error: 'Error connecting to Realtime' });
    });
  }

  /**
   * Serve the Realtime HTTP API: `POST /realtime/v1/api/broadcast` (batch) and
   * `POST /realtime/v1/api/broadcast/<topic>/events/<event>` (single).
   *
   * @returns false when the path is not under `/realtime/v1/` (nothing was written).
   */
  async handleHttp(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (!url.pathname.startsWith(API_PREFIX)) return false;
    const path = url.pathname.slice(API_PREFIX.length - 1);
    try {
      if (req.method === 'OPTIONS') {
        respond(res, 204, undefined, {
          'access-control-allow-methods': 'POST, OPTIONS',
          'access-control-allow-headers': 'authorization, apikey, content-type, x-client-info',
        });
        return true;
      }
      const single = /^\/api\/broadcast\/([^/]+)\/events\/([^/]+)\/?$/.exec(path);
      if (req.method === 'POST' && /^\/api\/broadcast\/?$/.test(path)) {
        await this.#batchBroadcast(req);
      } else if (req.method === 'POST' && single) {
        await this.#singleBroadcast(
          req,
          url,
          safeDecode(single[1] as string),
          safeDecode(single[2] as string),
        );
      } else {
        throw new HttpError(404, { message: 'not found' });
      }
      respond(res, 202, undefined);
    } catch (error) {
      if (error instanceof HttpError) respond(res, error.status, error.body);
      else {
        this.#log('HTTP API failed', error);
        respond(res, 500, { message: 'Unknown error' });
      }
    }
    return true;
  }

  /** Close every connection and stop listening to the database. Idempotent. */
  close(): Promise<void> {
    if (!this.#closed) this.#closed = this.#shutdown();
    return this.#closed;
  }

  // -------------------------------------------------------------------------------------------------------
  // Connections

  async #connect(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    vsn: SerializerVersion,
    token: string | undefined,
  ): Promise<void> {
    const outcome = await this.#connectCheck(token);
    if (!outcome.ok) {
      await this.#context.delay(this.#connectErrorMs);
      this.#pendingUpgrades.delete(socket);
      if (!socket.destroyed) writeRawResponse(socket, outcome.status, { error: outcome.error });
      return;
    }
    this.#pendingUpgrades.delete(socket);
    if (socket.destroyed || this.#closing) {
      socket.destroy();
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      if (this.#closing) {
        ws.terminate();
        return;
      }
      const client = new RealtimeSocket(this.#context, ws, vsn, outcome.token, outcome.claims);
      this.#sockets.add(client);
      this.#counters.connectionsOpened += 1;
      this.#counters.connectionsOpen += 1;
      this.#log(`socket ${client.id} connected (vsn ${vsn})`);
    });
  }

  async #connectCheck(
    token: string | undefined,
  ): Promise<
    | { readonly ok: true; readonly token: string; readonly claims: JwtClaims }
    | { readonly ok: false; readonly status: number; readonly error: string }
  > {
    if (token === undefined) return { ok: false, status: 401, error: 'API key is missing' };
    const check = await this.#checkToken(token);
    if (!check.ok) {
      switch (check.kind) {
        case 'expired':
          return { ok: false, status: 401, error: 'Token has expired' };
        case 'claims':
          return { ok: false, status: 401, error: 'Fields `role` and `exp` are required in JWT' };
        case 'malformed':
        case 'missing':
          return { ok: false, status: 401, error: 'The token provided is not a valid JWT' };
        case 'signature':
          return { ok: false, status: 401, error: 'Failed to validate JWT signature' };
        default:
          return { ok: false, status: 500, error: 'Error connecting to Realtime' };
      }
    }
    if (this.#users.size >= this.#quotas.maxConcurrentUsers) {
      this.#counters.quotaStops += 1;
      return { ok: false, status: 429, error: 'Too many connected users' };
    }
    if (this.#rates.joins.triggered) {
      this.#counters.quotaStops += 1;
      return { ok: false, status: 429, error: 'Too many joins per second' };
    }
    return { ok: true, token, claims: check.claims };
  }

  async #checkToken(token: string): Promise<TokenCheck> {
    const jwt = this.#apiKeyToJwt?.(token) ?? token;
    let claims: JwtClaims;
    try {
      claims = await this.#verifyJwt(jwt);
    } catch (error) {
      const kind = failureKind(error);
      const reported = (error as { expiredSecondsAgo?: unknown }).expiredSecondsAgo;
      const expiredSecondsAgo =
        typeof reported === 'number'
          ? reported
          : Math.max(0, this.#nowSeconds() - (tokenExp(jwt) ?? this.#nowSeconds()));
      return { ok: false, kind, expiredSecondsAgo };
    }
    if (typeof claims.role !== 'string' || claims.exp === undefined) {
      return { ok: false, kind: 'claims', expiredSecondsAgo: 0 };
    }
    if (!Number.isInteger(claims.exp)) return { ok: false, kind: 'exp_invalid', expiredSecondsAgo: 0 };
    const remaining = claims.exp - this.#nowSeconds();
    if (remaining <= 0) return { ok: false, kind: 'expired', expiredSecondsAgo: -remaining };
    return { ok: true, claims, expiresInSeconds: remaining };
  }

  #nowSeconds(): number {
    return Math.floor(this.#clock() / 1000);
  }

  // -------------------------------------------------------------------------------------------------------
  // Fan-out

  #fanOutBroadcast(room: string, message: OutboundBroadcast, exclude?: RealtimeChannel): void {
    const members = this.#rooms.get(room);
    if (!members) return;
    const frames = new Map<SerializerVersion, string | Buffer | null>();
    const delivered: RealtimeChannel[] = [];
    for (const channel of [...members]) {
      if (channel === exclude || channel.state !== 'joined' || !channel.canReceiveBroadcast) continue;
      const vsn = channel.socket.vsn;
      let frame = frames.get(vsn);
      if (frame === undefined) {
        frame = this.#encodeBroadcast(vsn, channel.topic, message);
        frames.set(vsn, frame);
      }
      if (frame === null) continue;
      channel.socket.sendFrame('broadcast', frame);
      delivered.push(channel);
    }
    for (const channel of delivered) channel.countDelivery();
  }

  #encodeBroadcast(
    vsn: SerializerVersion,
    topic: string,
    message: OutboundBroadcast,
  ): string | Buffer | null {
    if (message.type === 'json') {
      return encodeMessage(vsn, {
        joinRef: null,
        ref: null,
        topic,
        event: 'broadcast',
        payload: message.payload,
      });
    }
    if (vsn === '2.0.0') {
      try {
        const metadata = message.metadata === undefined ? undefined : JSON.stringify(message.metadata);
        return encodeUserBroadcast(topic, message.userEvent, message.encoding, message.payload, metadata);
      } catch (error) {
        this.#log(`cannot encode broadcast for ${topic}`, error);
        return null;
      }
    }
    // V1 receivers get JSON; they cannot represent binary payloads at all.
    if (message.encoding === 'binary') return null;
    let payload: unknown;
    try {
      payload = JSON.parse(message.payload.toString('utf8'));
    } catch {
      return null;
    }
    const body: Record<string, unknown> = { type: 'broadcast', event: message.userEvent, payload };
    if (message.metadata !== undefined) body.meta = message.metadata;
    return encodeMessage(vsn, { joinRef: null, ref: null, topic, event: 'broadcast', payload: body });
  }

  #onDatabaseBroadcast(message: DatabaseBroadcast): void {
    if (this.#closing || this.#rates.events.triggered) return;
    const text = JSON.stringify(message.payload ?? null);
    if (payloadTooLarge(Buffer.byteLength(text, 'utf8'), this.#quotas)) return;
    this.#rates.events.add(1);
    this.#fanOutBroadcast(roomKey(message.private, message.topic), {
      type: 'user',
      userEvent: message.event,
      encoding: 'json',
      payload: Buffer.from(text, 'utf8'),
      metadata: { id: message.id },
    });
  }

  #onChange(change: RowChange): void {
    if (this.#closing) return;
    // Subscriptions active when the change arrives; later ones do not see it (trap 6).
    const targets = [...this.#postgresChannels];
    if (targets.length === 0) return;
    this.#changeQueue = this.#changeQueue
      .then(() => this.#dispatchChange(change, targets))
      .catch((error: unknown) => this.#log('postgres change dispatch failed', error));
  }

  async #dispatchChange(change: RowChange, targets: readonly RealtimeChannel[]): Promise<void> {
    if (this.#rates.dbEvents.triggered) return;
    const allColumns = change.columns.map((column) => column.name);
    const access = new Map<string, Promise<{ visible: boolean; selectable: ReadonlySet<string> }>>();
    const accessFor = (claims: JwtClaims) => {
      const key = canonicalJson(claims);
      let pending = access.get(key);
      if (!pending) {
        pending = this.#bridge.rowVisibleTo(claims, change).then(
          (result) => ({ visible: result.visible, selectable: new Set(result.columns) }),
          (error: unknown) => {
            this.#log('rowVisibleTo failed', error);
            return { visible: false, selectable: new Set(allColumns) };
          },
        );
        access.set(key, pending);
      }
      return pending;
    };
    const candidates = targets
      .filter((channel) => channel.state === 'joined' && channel.claims !== undefined)
      .map((channel) => {
        const wanted = channel.postgresBindings.filter((binding) => bindingWants(binding.params, change));
        return {
          channel,
          wanted,
          access: wanted.length > 0 ? accessFor(channel.claims as JwtClaims) : undefined,
        };
      })
      .filter((candidate) => candidate.wanted.length > 0);
    const deliveries: Array<{ channel: RealtimeChannel; ids: number[]; data: Record<string, unknown> }> = [];
    for (const candidate of candidates) {
      const { visible, selectable } = await (candidate.access as Promise<{
        visible: boolean;
        selectable: ReadonlySet<string>;
      }>);
      const failed = changeError(change, selectable) !== undefined;
      if (!failed && change.rlsEnabled && change.type !== 'DELETE' && !visible) continue;
      // One message per channel (per distinct payload), ids in the server's (reversed) order.
      const groups = new Map<string, { ids: number[]; data: Record<string, unknown> }>();
      for (const binding of candidate.wanted) {
        const data = changeData(change, selectable, binding.params.select);
        const key = canonicalJson(data);
        const group = groups.get(key);
        if (group) group.ids.unshift(binding.id);
        else groups.set(key, { ids: [binding.id], data });
      }
      for (const group of groups.values()) deliveries.push({ channel: candidate.channel, ...group });
    }
    let matched = 0;
    for (const { channel, ids, data } of deliveries) {
      if (channel.state !== 'joined') continue;
      channel.socket.send('postgres_changes', {
        joinRef: null,
        ref: null,
        topic: channel.topic,
        event: 'postgres_changes',
        payload: { ids, data },
      });
      matched += ids.length;
    }
    this.#rates.dbEvents.add(matched);
  }

  // -------------------------------------------------------------------------------------------------------
  // HTTP API

  async #authorizeRequest(req: IncomingMessage): Promise<JwtClaims> {
    const authorization = header(req, 'authorization');
    let token: string | undefined;
    if (authorization) {
      const [scheme, value] = authorization.split(' ');
      if (scheme?.toLowerCase() === 'bearer' && value) token = value;
    }
    token ??= header(req, 'apikey');
    if (!token) throw new HttpError(401, { message: 'Unauthorized' });
    const check = await this.#checkToken(token);
    if (!check.ok) throw new HttpError(401, { message: 'Unauthorized' });
    return check.claims;
  }

  async #batchBroadcast(req: IncomingMessage): Promise<void> {
    const claims = await this.#authorizeRequest(req);
    const body = parseJsonBody(await readBody(req));
    const messages = isObject(body) ? body.messages : undefined;
    if (!Array.isArray(messages) || messages.length === 0) {
      throw new HttpError(422, {
        errors: { messages: [messages === undefined ? "can't be blank" : 'is invalid'] },
      });
    }
    const parsed: Array<{
      topic: string;
      event: string;
      payload: Record<string, unknown>;
      private: boolean;
      id?: string;
    }> = [];
    const errors: Array<Record<string, string[]>> = [];
    let invalid = false;
    for (const raw of messages) {
      const problems: Record<string, string[]> = {};
      const message = isObject(raw) ? raw : {};
      const required = (field: string, value: unknown, ok: boolean) => {
        if (value === undefined || value === null || value === '') problems[field] = ["can't be blank"];
        else if (!ok) problems[field] = ['is invalid'];
      };
      required('topic', message.topic, typeof message.topic === 'string');
      required('event', message.event, typeof message.event === 'string');
      required('payload', message.payload, isObject(message.payload));
      const isPrivate = castBoolean(message.private);
      if (isPrivate === undefined) problems.private = ['is invalid'];
      if (message.id !== undefined && (typeof message.id !== 'string' || !UUID.test(message.id))) {
        problems.id = ['is invalid'];
      }
      if (isObject(message.payload) && payloadTooLarge(jsonByteSize(message.payload), this.#quotas)) {
        problems.payload = ['Payload size exceeds tenant limit'];
      }
      if (Object.keys(problems).length > 0) invalid = true;
      errors.push(problems);
      parsed.push({
        topic: message.topic as string,
        event: message.event as string,
        payload: message.payload as Record<string, unknown>,
        private: isPrivate ?? false,
        ...(typeof message.id === 'string' ? { id: message.id } : {}),
      });
    }
    if (invalid) throw new HttpError(422, { errors: { messages: errors } });
    const events = this.#rates.events;
    if (events.avg > this.#quotas.maxEventsPerSecond) {
      throw new HttpError(429, { message: 'You have exceeded your rate limit' });
    }
    if (parsed.length + events.avg > this.#quotas.maxEventsPerSecond) {
      throw new HttpError(429, { message: 'Too many messages to broadcast, please reduce the batch size' });
    }
    const send = (message: (typeof parsed)[number]) => {
      const payload: Record<string, unknown> = {
        type: 'broadcast',
        event: message.event,
        payload: message.payload,
      };
      if (message.id !== undefined) payload.meta = { id: message.id };
      events.add(1);
      this.#counters.broadcastsReceived += 1;
      this.#fanOutBroadcast(roomKey(message.private, message.topic), { type: 'json', payload });
    };
    for (const message of parsed) if (!message.private) send(message);
    const privateTopics = [
      ...new Set(parsed.filter((message) => message.private).map((message) => message.topic)),
    ];
    for (const topic of privateTopics) {
      let allowed = false;
      try {
        allowed = await this.#bridge.authorizeChannelWrite(claims, topic, 'broadcast');
      } catch (error) {
        this.#log(`write policy check of ${topic} failed`, error);
      }
      // Messages to private topics the token may not write to are dropped silently.
      if (allowed)
        for (const message of parsed) if (message.private && message.topic === topic) send(message);
    }
  }

  async #singleBroadcast(req: IncomingMessage, url: URL, topic: string, event: string): Promise<void> {
    const claims = await this.#authorizeRequest(req);
    const isPrivate = url.searchParams.get('private') === 'true';
    const contentType = header(req, 'content-type') ?? '';
    const raw = await readBody(req);
    let message: OutboundBroadcast;
    let size: number;
    if (contentType.includes('application/octet-stream')) {
      message = { type: 'user', userEvent: event, encoding: 'binary', payload: raw };
      size = raw.length;
    } else {
      let payload: unknown = {};
      if (contentType.includes('json') && raw.length > 0) {
        const parsed = parseJsonBody(raw);
        // Plug puts a JSON body that is not an object under "_json".
        payload = isObject(parsed) ? parsed : { _json: parsed };
      }
      const text = JSON.stringify(payload);
      message = { type: 'user', userEvent: event, encoding: 'json', payload: Buffer.from(text, 'utf8') };
      size = Buffer.byteLength(text, 'utf8');
    }
    if (payloadTooLarge(size, this.#quotas)) {
      throw new HttpError(422, { errors: { payload: ['Payload size exceeds tenant limit'] } });
    }
    if (this.#rates.events.avg >= this.#quotas.maxEventsPerSecond) {
      throw new HttpError(429, { message: 'You have exceeded your rate limit' });
    }
    if (isPrivate) {
      let allowed: boolean;
      try {
        allowed = await this.#bridge.authorizeChannelWrite(claims, topic, 'broadcast');
      } catch (error) {
        this.#log(`write policy check of ${topic} failed`, error);
        throw new HttpError(500, { message: 'Unable to authorize broadcast' });
      }
      if (!allowed) throw new HttpError(403, { message: 'Unauthorized' });
    }
    this.#rates.events.add(1);
    this.#counters.broadcastsReceived += 1;
    this.#fanOutBroadcast(roomKey(isPrivate, topic), message);
  }

  // -------------------------------------------------------------------------------------------------------
  // Housekeeping

  #schedule(ms: number, callback: () => void): () => void {
    const handle = this.#timers.setTimeout(() => {
      this.#pendingTimers.delete(handle);
      callback();
    }, ms);
    this.#pendingTimers.add(handle);
    return () => {
      if (this.#pendingTimers.delete(handle)) this.#timers.clearTimeout(handle);
    };
  }

  #log(message: string, detail?: unknown): void {
    this.#logger?.(message, detail);
  }

  async #shutdown(): Promise<void> {
    this.#closing = true;
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    for (const socket of this.#pendingUpgrades) socket.destroy();
    this.#pendingUpgrades.clear();
    const sockets = [...this.#sockets];
    const closed = sockets.map(
      (socket) =>
        new Promise<void>((resolve) => {
          if (socket.ws.readyState === socket.ws.CLOSED) resolve();
          else socket.ws.once('close', () => resolve());
        }),
    );
    // A server restart closes sockets with 1012; the client would reconnect.
    for (const socket of sockets) socket.close(1012);
    const grace = new Promise<void>((resolve) => setTimeout(resolve, CLOSE_GRACE_MS).unref());
    await Promise.race([Promise.all(closed), grace]);
    for (const socket of sockets) socket.ws.terminate();
    for (const handle of this.#pendingTimers) this.#timers.clearTimeout(handle);
    this.#pendingTimers.clear();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
    await this.#changeQueue;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const FAILURE_KINDS: readonly string[] = [
  'missing',
  'malformed',
  'signature',
  'expired',
  'claims',
  'exp_invalid',
];

function failureKind(error: unknown): JwtFailureKind | 'unknown' {
  const kind = (error as { kind?: unknown } | null)?.kind;
  return typeof kind === 'string' && FAILURE_KINDS.includes(kind) ? (kind as JwtFailureKind) : 'unknown';
}

/** `exp` of a JWT without verifying it. */
function tokenExp(token: string): number | undefined {
  const part = token.split('.')[1];
  if (!part) return undefined;
  try {
    const payload: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return isObject(payload) && typeof payload.exp === 'number' ? payload.exp : undefined;
  } catch {
    return undefined;
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function safeDecode(component: string): string {
  try {
    return decodeURIComponent(component);
  } catch {
    return component;
  }
}

function castBoolean(value: unknown): boolean | undefined {
  if (value === undefined || value === null) return false;
  if (typeof value === 'boolean') return value;
  if (value === 'true') return true;
  if (value === 'false') return false;
  return undefined;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    size += buffer.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, { message: 'Request Entity Too Large' });
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
}

function parseJsonBody(raw: Buffer): unknown {
  if (raw.length === 0) return {};
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    throw new HttpError(400, { message: 'Malformed JSON body' });
  }
}

function respond(
  res: ServerResponse,
  status: number,
  body: unknown,
  extraHeaders: Record<string, string> = {},
): void {
  const headers: Record<string, string> = { 'access-control-allow-origin': '*', ...extraHeaders };
  if (body === undefined) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
  });
  res.end(text);
}

/** Answer an upgrade request with a plain HTTP response and close the socket. */
function writeRawResponse(socket: Duplex, status: number, body: unknown): void {
  if (socket.destroyed) return;
  const text = body === undefined ? '' : JSON.stringify(body);
  const headers = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`,
    'connection: close',
    `content-length: ${Buffer.byteLength(text)}`,
    ...(body === undefined ? [] : ['content-type: application/json; charset=utf-8']),
  ];
  socket.end(`${headers.join('\r\n')}\r\n\r\n${text}`);
}
