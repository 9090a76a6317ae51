/**
 * One joined (or joining) channel of the local Realtime server, modelled on Realtime's `RealtimeChannel`
 * process: the join checks in the server's order, broadcast, presence, `access_token` refreshes, token
 * expiry, the background `postgres_changes` subscription and server-side stops (`system` error, then
 * `phx_close`). Pushes are handled one at a time, in the order they arrived.
 *
 * @internal
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import type { JwtClaims } from '../internal/contracts';
import {
  isObject,
  jsonByteSize,
  type OutboundBroadcast,
  payloadTooLarge,
  type RealtimeContext,
  roomKey,
} from './context';
import {
  bindingId,
  canonicalJson,
  describeParams,
  parseSubscriptionParams,
  type SubscriptionParams,
  validateAgainstColumns,
} from './postgresFilter';
import type { RealtimeSocket } from './RealtimeSocket';
import type { PhoenixMessage, UserBroadcastPush } from './serializer';

/** A `postgres_changes` binding accepted by the subscription. */
export interface PostgresBinding {
  /** The id echoed in the join reply and sent in `postgres_changes.ids`. */
  readonly id: number;
  readonly params: SubscriptionParams;
}

type JoinCheck =
  | { readonly ok: true; readonly claims: JwtClaims; readonly expiresInSeconds: number }
  | { readonly ok: false; readonly reason: string; readonly quota?: boolean; readonly closeSocket?: boolean };

const TOKEN_RECHECK_MS = 5 * 60_000;
const POSTGRES_RETRY_MS = 5000;

/** A channel on one socket. */
export class RealtimeChannel {
  readonly topic: string;
  readonly subTopic: string;
  /** The join_ref the server puts on its messages (`join_ref || ref` of the join). */
  readonly joinRef: string | null;
  /** The join_ref exactly as the join carried it; later pushes must carry the same. */
  readonly wireJoinRef: string | null;
  state: 'joining' | 'joined' | 'closed' = 'joining';
  isPrivate = false;
  room = '';
  claims: JwtClaims | undefined;
  presenceEnabled = false;
  /** Private channels only: read policies evaluated at join (null = not evaluated). */
  broadcastRead: boolean | null = null;
  presenceRead: boolean | null = null;
  /** Bindings streaming changes (set once "Subscribed to PostgreSQL" was sent). */
  postgresBindings: readonly PostgresBinding[] = [];

  readonly #context: RealtimeContext;
  readonly #joinPushRef: string | null;
  #accessToken = '';
  #selfBroadcast = false;
  #ackBroadcast = false;
  #presenceKey = '';
  #broadcastWrite: boolean | null = null;
  #presenceWrite: boolean | null = null;
  #postgresParams: Record<string, unknown>[] = [];
  #trackedPayload: string | undefined;
  #presenceWindow: { counter: number; resetAt: number | undefined } = { counter: 0, resetAt: undefined };
  #cancelTokenCheck: (() => void) | undefined;
  #cancelPostgres: (() => void) | undefined;
  #queue: Promise<void> = Promise.resolve();

  constructor(
    context: RealtimeContext,
    readonly socket: RealtimeSocket,
    join: PhoenixMessage,
  ) {
    this.#context = context;
    this.topic = join.topic;
    this.subTopic = join.topic.slice('realtime:'.length);
    this.wireJoinRef = join.joinRef;
    this.joinRef = join.joinRef ?? join.ref;
    this.#joinPushRef = join.ref;
  }

  /** Public channels receive everything; private ones need the broadcast read policy. */
  get canReceiveBroadcast(): boolean {
    return !this.isPrivate || this.broadcastRead === true;
  }

  /** Public channels receive every diff; private ones need the presence read policy. */
  get canReceivePresence(): boolean {
    return !this.isPrivate || this.presenceRead === true;
  }

  /**
   * Run the join: the server's checks in order, the error reply after the configured delay, or the ok reply
   * followed by `presence_state` and the background postgres subscription.
   *
   * @param afterReply - Runs right after the reply (the phx_close of a channel this join replaced).
   */
  async join(payload: unknown, afterReply?: () => void): Promise<void> {
    const context = this.#context;
    const params = isObject(payload) ? payload : {};
    const config = isObject(params.config) ? params.config : {};
    const broadcast = isObject(config.broadcast) ? config.broadcast : {};
    const presence = isObject(config.presence) ? config.presence : {};
    this.isPrivate = flexibleBoolean(config.private);
    this.room = roomKey(this.isPrivate, this.subTopic);
    this.#selfBroadcast = flexibleBoolean(broadcast.self);
    this.#ackBroadcast = flexibleBoolean(broadcast.ack);
    this.presenceEnabled = flexibleBoolean(presence.enabled);
    const key = presence.key;
    this.#presenceKey = key === undefined || key === null || key === '' ? uuidV1() : String(key);
    this.#accessToken = this.#resolveAccessToken(params);

    let check: JoinCheck;
    try {
      check = await this.#checkJoin(config, broadcast);
    } catch (error) {
      context.log(`join of ${this.topic} failed`, error);
      check = { ok: false, reason: 'Unknown Error on Channel' };
    }
    if (this.socket.closed) {
      this.state = 'closed';
      return;
    }

    if (!check.ok) {
      context.counters.joinErrors += 1;
      if (check.quota) context.counters.quotaStops += 1;
      await context.delay(context.joinErrorMs);
      this.state = 'closed';
      if (this.socket.closed) return;
      this.socket.reply(this.joinRef, this.#joinPushRef, this.topic, 'error', { reason: check.reason });
      afterReply?.();
      if (check.closeSocket) this.socket.close(1001);
      return;
    }

    // Everything from here runs in one go, so no fan-out can slip in before the reply.
    this.claims = check.claims;
    this.state = 'joined';
    this.socket.channels.set(this.topic, this);
    context.addToRoom(this);
    context.addUser(this.socket);
    context.counters.joins += 1;
    const echo = this.#postgresParams.map((binding) => ({ ...binding, id: bindingId(binding) }));
    this.socket.reply(this.joinRef, this.#joinPushRef, this.topic, 'ok', { postgres_changes: echo });
    afterReply?.();
    this.#scheduleTokenCheck(check.expiresInSeconds);
    if (this.presenceEnabled) this.#syncPresence();
    if (this.state === 'joined' && this.#postgresParams.length > 0) this.#schedulePostgresSubscribe();
  }

  /** Hand a decoded push to the channel (handled after the ones before it). */
  deliver(message: PhoenixMessage): void {
    this.#enqueue(() => this.#handleIn(message));
  }

  /** Hand a binary kind-3 broadcast to the channel. */
  deliverPush(push: UserBroadcastPush): void {
    this.#enqueue(() =>
      this.#broadcast(push.ref, {
        type: 'user',
        userEvent: push.userEvent,
        encoding: push.encoding,
        payload: push.payload,
      }),
    );
  }

  /** Count a message delivered to this channel and stop it if the tenant is over its message rate. */
  countDelivery(): void {
    const events = this.#context.rates.events;
    events.add(1);
    if (events.triggered) this.stop('Too many messages per second', { quota: true });
  }

  /** Stop the channel from the server side: `system` error, then `phx_close`. The client does not rejoin. */
  stop(message: string, options: { quota?: boolean } = {}): void {
    if (this.state !== 'joined') return;
    if (options.quota) this.#context.counters.quotaStops += 1;
    this.#pushSystem('system', 'error', message);
    this.sendClose();
    this.#cleanup();
  }

  /** `[join_ref, join_ref, topic, "phx_close", {}]`. */
  sendClose(): void {
    this.socket.send('close', {
      joinRef: this.joinRef,
      ref: this.joinRef,
      topic: this.topic,
      event: 'phx_close',
      payload: {},
    });
  }

  /** The channel process dies without a word (socket closed, or replaced by a duplicate join). */
  terminate(): void {
    this.#cleanup();
  }

  // -------------------------------------------------------------------------------------------------------

  #enqueue(task: () => Promise<void> | void): void {
    this.#queue = this.#queue
      .then(task)
      .catch((error: unknown) => this.#context.log(`channel ${this.topic}: handler failed`, error));
  }

  #resolveAccessToken(params: Record<string, unknown>): string {
    const connectToken = this.socket.connectToken;
    const given = params.access_token ?? params.user_token;
    if (typeof given === 'string' && given.startsWith('sb_')) return connectToken;
    if (typeof params.user_token === 'string') return params.user_token;
    if (typeof params.access_token === 'string') return params.access_token;
    return connectToken;
  }

  async #checkJoin(config: Record<string, unknown>, broadcast: Record<string, unknown>): Promise<JoinCheck> {
    const context = this.#context;
    const { quotas } = context;
    if (this.subTopic === '')
      return { ok: false, reason: 'TopicNameRequired: You must provide a topic name' };
    if (context.closing)
      return { ok: false, reason: 'RealtimeRestarting: Realtime is restarting, please standby' };
    if (context.privateOnly && !this.isPrivate) {
      return { ok: false, reason: 'PrivateOnly: This project only allows private channels' };
    }
    if (!context.isUser(this.socket) && context.userCount() >= quotas.maxConcurrentUsers) {
      return { ok: false, quota: true, reason: 'ConnectionRateLimitReached: Too many connected users' };
    }
    if (context.rates.joins.triggered) {
      return {
        ok: false,
        quota: true,
        closeSocket: true,
        reason: 'ClientJoinRateLimitReached: Too many joins per second',
      };
    }
    context.rates.joins.add(1);
    if (this.socket.channels.size >= quotas.maxChannelsPerClient) {
      return { ok: false, quota: true, reason: 'ChannelRateLimitReached: Too many channels' };
    }

    const token = await context.checkToken(this.#accessToken);
    if (!token.ok) return { ok: false, reason: joinTokenReason(token.kind, token.expiredSecondsAgo) };

    const bindings = Array.isArray(config.postgres_changes)
      ? config.postgres_changes.filter((binding) => binding !== null && binding !== undefined)
      : [];
    if (!bindings.every(isObject)) return { ok: false, reason: 'Unknown Error on Channel' };
    this.#postgresParams = bindings as Record<string, unknown>[];

    if (this.isPrivate) {
      const denied = `Unauthorized: You do not have permissions to read from this Channel topic: ${this.subTopic}`;
      let permissions: Awaited<ReturnType<typeof context.bridge.authorizeChannelRead>>;
      try {
        permissions = await context.bridge.authorizeChannelRead(
          token.claims,
          this.subTopic,
          this.presenceEnabled ? ['broadcast', 'presence'] : ['broadcast'],
        );
      } catch (error) {
        context.log(`read policy check of ${this.topic} failed`, error);
        return { ok: false, reason: 'Realtime was unable to connect to the project database' };
      }
      this.broadcastRead = permissions.read.broadcast;
      this.presenceRead = this.presenceEnabled ? permissions.read.presence : null;
      if (!this.broadcastRead && !this.presenceRead) return { ok: false, reason: denied };
      if (broadcast.replay !== undefined && !this.broadcastRead) return { ok: false, reason: denied };
    }
    if (broadcast.replay !== undefined && !this.isPrivate) {
      return { ok: false, reason: 'UnableToReplayMessages: Replay is not allowed for public channels' };
    }
    return { ok: true, claims: token.claims, expiresInSeconds: token.expiresInSeconds };
  }

  async #handleIn(message: PhoenixMessage): Promise<void> {
    if (this.state !== 'joined') return;
    switch (message.event) {
      case 'phx_leave':
        this.socket.reply(this.joinRef, message.ref, this.topic, 'ok', {});
        this.sendClose();
        this.#cleanup();
        return;
      case 'broadcast':
        // A non-map payload would crash the real dispatcher; the message goes nowhere.
        if (isObject(message.payload))
          await this.#broadcast(message.ref, { type: 'json', payload: message.payload });
        return;
      case 'presence':
        await this.#presence(message.ref, message.payload);
        return;
      case 'access_token':
        if (isObject(message.payload) && Object.hasOwn(message.payload, 'access_token')) {
          await this.#refreshToken(message.payload.access_token);
          return;
        }
        break;
    }
    // Unexpected client messages only count against the message rate.
    this.#context.rates.events.add(1);
  }

  async #broadcast(ref: string | null, message: OutboundBroadcast): Promise<void> {
    const context = this.#context;
    if (this.state !== 'joined') return;
    if (this.isPrivate) {
      if (this.#broadcastWrite === null) {
        try {
          this.#broadcastWrite = await context.bridge.authorizeChannelWrite(
            this.claims as JwtClaims,
            this.subTopic,
            'broadcast',
          );
        } catch (error) {
          context.log(`write policy check of ${this.topic} failed`, error);
          return;
        }
      }
      // Without the write policy the message is dropped silently, even with ack.
      if (this.state !== 'joined' || !this.#broadcastWrite) return;
    }
    context.rates.events.add(1);
    context.counters.broadcastsReceived += 1;
    const size =
      message.type === 'json'
        ? jsonByteSize(message.payload)
        : message.payload.length + Buffer.byteLength(message.userEvent) + 16;
    const tooLarge = payloadTooLarge(size, context.quotas);
    if (!tooLarge) context.fanOutBroadcast(this.room, message, this.#selfBroadcast ? undefined : this);
    if (this.#ackBroadcast && this.state === 'joined') {
      if (tooLarge) this.socket.reply(this.joinRef, ref, this.topic, 'error', 'payload_size_exceeded');
      else this.socket.reply(this.joinRef, ref, this.topic, 'ok', {});
    }
  }

  async #presence(ref: string | null, payload: unknown): Promise<void> {
    const context = this.#context;
    context.counters.presenceMessages += 1;
    if (!isObject(payload) || typeof payload.event !== 'string') {
      this.socket.reply(this.joinRef, ref, this.topic, 'ok', {});
      return;
    }
    if (!this.#withinClientPresenceRate()) {
      this.stop('Client presence rate limit exceeded', { quota: true });
      return;
    }
    const event = payload.event.toLowerCase();
    if (event === 'untrack') {
      const diff = context.presence.untrack(this.room, this);
      this.#trackedPayload = undefined;
      this.socket.reply(this.joinRef, ref, this.topic, 'ok', {});
      if (diff) context.fanOutPresenceDiff(this.room, diff);
      return;
    }
    if (event !== 'track') {
      this.socket.reply(this.joinRef, ref, this.topic, 'error', {});
      return;
    }
    if (this.isPrivate && this.#presenceWrite === null) {
      try {
        if (this.presenceRead === null) {
          const read = await context.bridge.authorizeChannelRead(this.claims as JwtClaims, this.subTopic, [
            'presence',
          ]);
          this.presenceRead = read.read.presence;
        }
        this.#presenceWrite = await context.bridge.authorizeChannelWrite(
          this.claims as JwtClaims,
          this.subTopic,
          'presence',
        );
      } catch (error) {
        context.log(`presence policy check of ${this.topic} failed`, error);
        if (this.state === 'joined') this.socket.reply(this.joinRef, ref, this.topic, 'error', {});
        return;
      }
      if (this.state !== 'joined') return;
    }
    if (this.isPrivate && !this.#presenceWrite) {
      this.socket.reply(this.joinRef, ref, this.topic, 'error', {});
      return;
    }
    const meta = Object.hasOwn(payload, 'payload') ? payload.payload : {};
    if (!isObject(meta)) {
      this.socket.reply(this.joinRef, ref, this.topic, 'error', {
        reason: 'Presence track payload must be a map',
      });
      return;
    }
    const canonical = canonicalJson(meta);
    if (canonical === this.#trackedPayload) {
      // An identical re-track changes nothing: ok reply, no diff.
      this.socket.reply(this.joinRef, ref, this.topic, 'ok', {});
      return;
    }
    if (payloadTooLarge(jsonByteSize(meta), context.quotas)) {
      this.stop('Track message size exceeded', { quota: true });
      return;
    }
    if (context.rates.presence.avg > context.quotas.maxPresenceEventsPerSecond) {
      this.stop('Too many presence messages per second', { quota: true });
      return;
    }
    context.rates.presence.add(1);
    const diff = context.presence.track(this.room, this, this.#presenceKey, meta);
    this.#trackedPayload = canonical;
    this.presenceEnabled = true;
    this.socket.reply(this.joinRef, ref, this.topic, 'ok', {});
    context.fanOutPresenceDiff(this.room, diff);
  }

  #withinClientPresenceRate(): boolean {
    const { clientPresenceMaxCalls, clientPresenceWindowMs } = this.#context.quotas;
    const now = this.#context.now();
    const window = this.#presenceWindow;
    if (window.resetAt === undefined || now > window.resetAt) {
      window.counter = 1;
      window.resetAt = now + clientPresenceWindowMs;
      return true;
    }
    if (window.counter >= clientPresenceMaxCalls) return false;
    window.counter += 1;
    return true;
  }

  async #refreshToken(token: unknown): Promise<void> {
    const context = this.#context;
    // No reply in any case: the client's push just times out quietly.
    if (token === null || token === undefined) return;
    if (typeof token !== 'string') {
      context.rates.events.add(1);
      return;
    }
    if (token.startsWith('sb_') || token === this.#accessToken) return;
    const previousRead = { broadcast: this.broadcastRead, presence: this.presenceRead };
    this.#accessToken = token;
    this.#broadcastWrite = null;
    this.#presenceWrite = null;
    const check = await context.checkToken(token);
    if (this.state !== 'joined') return;
    if (!check.ok) {
      this.stop(refreshTokenMessage(check.kind, check.expiredSecondsAgo));
      return;
    }
    if (this.isPrivate) {
      let read: { broadcast: boolean; presence: boolean };
      try {
        const permissions = await context.bridge.authorizeChannelRead(
          check.claims,
          this.subTopic,
          this.presenceEnabled ? ['broadcast', 'presence'] : ['broadcast'],
        );
        read = permissions.read;
      } catch (error) {
        context.log(`read policy check of ${this.topic} failed`, error);
        this.stop('Realtime was unable to connect to the project database');
        return;
      }
      if (this.state !== 'joined') return;
      this.broadcastRead = read.broadcast;
      this.presenceRead = this.presenceEnabled ? read.presence : null;
      if (!this.broadcastRead && !this.presenceRead) {
        this.stop(`You do not have permissions to read from this Channel topic: ${this.subTopic}`);
        return;
      }
      const revoked =
        (previousRead.broadcast === true && this.broadcastRead === false) ||
        (previousRead.presence === true && this.presenceRead === false);
      if (revoked) {
        this.stop(`You no longer have permission to read from this Channel topic: ${this.subTopic}`);
        return;
      }
    }
    this.claims = check.claims;
    this.#scheduleTokenCheck(check.expiresInSeconds);
    // Subscriptions are upserted with the new claims: changes keep flowing, and another
    // "Subscribed to PostgreSQL" follows.
    if (this.#postgresParams.length > 0) this.#schedulePostgresSubscribe();
  }

  #scheduleTokenCheck(expiresInSeconds: number): void {
    this.#cancelTokenCheck?.();
    const ms = Math.min(TOKEN_RECHECK_MS, expiresInSeconds * 1000);
    this.#cancelTokenCheck = this.#context.schedule(ms, () => this.#enqueue(() => this.#confirmToken()));
  }

  async #confirmToken(): Promise<void> {
    if (this.state !== 'joined') return;
    const check = await this.#context.checkToken(this.#accessToken);
    if (this.state !== 'joined') return;
    if (check.ok) {
      this.claims = check.claims;
      this.#scheduleTokenCheck(check.expiresInSeconds);
    } else {
      this.stop(refreshTokenMessage(check.kind, check.expiredSecondsAgo));
    }
  }

  #syncPresence(): void {
    const context = this.#context;
    if (!this.presenceEnabled || !this.canReceivePresence) return;
    if (context.rates.presence.avg > context.quotas.maxPresenceEventsPerSecond) {
      this.stop('Too many presence messages per second', { quota: true });
      return;
    }
    context.rates.presence.add(1);
    this.socket.send('presence_state', {
      joinRef: this.joinRef,
      ref: null,
      topic: this.topic,
      event: 'presence_state',
      payload: context.presence.list(this.room),
    });
  }

  #schedulePostgresSubscribe(delayMs = this.#context.postgresSubscribeDelayMs): void {
    this.#cancelPostgres?.();
    this.#cancelPostgres = this.#context.schedule(delayMs, () =>
      this.#enqueue(() => this.#subscribePostgres()),
    );
  }

  async #subscribePostgres(): Promise<void> {
    if (this.state !== 'joined') return;
    const bindings: PostgresBinding[] = [];
    for (const raw of this.#postgresParams) {
      const parsed = parseSubscriptionParams(raw);
      if (!parsed.ok) {
        // Bad params are not retried; the channel stays joined without changes.
        this.#pushSystem('postgres_changes', 'error', parsed.error);
        return;
      }
      bindings.push({ id: bindingId(raw), params: parsed.params });
    }
    for (const binding of bindings) {
      let error: string | undefined;
      try {
        error = await this.#validateBinding(binding.params);
      } catch (failure) {
        if (this.state !== 'joined') return;
        this.#pushSystem(
          'postgres_changes',
          'error',
          failure instanceof Error ? failure.message : String(failure),
        );
        this.#schedulePostgresSubscribe(POSTGRES_RETRY_MS);
        return;
      }
      if (this.state !== 'joined') return;
      if (error !== undefined) {
        this.#pushSystem('postgres_changes', 'error', error);
        return;
      }
    }
    this.postgresBindings = bindings;
    this.#context.activatePostgres(this);
    this.#pushSystem('postgres_changes', 'ok', 'Subscribed to PostgreSQL');
  }

  async #validateBinding(params: SubscriptionParams): Promise<string | undefined> {
    const { bridge } = this.#context;
    const described = describeParams(params);
    const notEnabled = `Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [${described}]`;
    if (params.schema === '*') return undefined;
    const published = await bridge.isPublished(
      params.schema,
      params.table === '*' ? undefined : params.table,
    );
    if (!published) return notEnabled;
    if (params.table === '*' || (params.filters.length === 0 && params.select === null)) return undefined;
    const columns = await bridge.tableColumns(params.schema, params.table);
    if (!columns) return notEnabled;
    const invalid = validateAgainstColumns(params, columns);
    if (invalid === undefined) return undefined;
    return `Unable to subscribe to changes with given parameters. An exception happened so please check your connect parameters: [${described}]. Exception: ${invalid}`;
  }

  #pushSystem(extension: 'system' | 'postgres_changes', status: 'ok' | 'error', message: string): void {
    this.socket.send('system', {
      joinRef: this.joinRef,
      ref: null,
      topic: this.topic,
      event: 'system',
      payload: { extension, status, message, channel: this.subTopic },
    });
  }

  #cleanup(): void {
    if (this.state === 'closed') return;
    const wasJoined = this.state === 'joined';
    this.state = 'closed';
    this.#cancelTokenCheck?.();
    this.#cancelPostgres?.();
    this.socket.forget(this);
    if (!wasJoined) return;
    const context = this.#context;
    context.removeFromRoom(this);
    context.deactivatePostgres(this);
    const diff = context.presence.untrack(this.room, this);
    if (diff) context.fanOutPresenceDiff(this.room, diff);
  }
}

/** Booleans as the server's `FlexibleBoolean` reads them (`"true"`/`"false"` strings too); default false. */
function flexibleBoolean(value: unknown): boolean {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') return value.toLowerCase() === 'true';
  return false;
}

function joinTokenReason(kind: string, expiredSecondsAgo: number): string {
  switch (kind) {
    case 'expired':
      return `InvalidJWTToken: Token has expired ${expiredSecondsAgo} seconds ago`;
    case 'claims':
      return 'InvalidJWTToken: Fields `role` and `exp` are required in JWT';
    case 'malformed':
    case 'missing':
      return 'MalformedJWT: The token provided is not a valid JWT';
    case 'signature':
      return 'JwtSignatureError: Failed to validate JWT signature';
    case 'exp_invalid':
      return 'InvalidJWTToken: Token expiration time is invalid';
    default:
      return 'Unknown Error on Channel';
  }
}

/** The `system` message of a channel stopped by a token check after the join. */
function refreshTokenMessage(kind: string, expiredSecondsAgo: number): string {
  switch (kind) {
    case 'expired':
      return `Token has expired ${expiredSecondsAgo} seconds ago`;
    case 'claims':
      return 'Fields `role` and `exp` are required in JWT';
    case 'malformed':
    case 'missing':
      return 'The token provided is not a valid JWT';
    case 'signature':
      // The real server reports this one with Elixir's inspect of the error atom.
      return ':signature_error';
    default:
      return 'Token expiration time is invalid';
  }
}

let uuidClockSequence = randomBytes(2).readUInt16BE(0) & 0x3fff;
let lastUuidTime = 0n;

/** A version-1 (time-based) UUID, as the server makes for an empty presence key. */
function uuidV1(): string {
  // 100 ns intervals since 1582-10-15.
  let time = BigInt(Date.now()) * 10_000n + 0x01b21dd213814000n;
  if (time <= lastUuidTime) time = lastUuidTime + 1n;
  lastUuidTime = time;
  uuidClockSequence = (uuidClockSequence + 1) & 0x3fff;
  const timeLow = (time & 0xffffffffn).toString(16).padStart(8, '0');
  const timeMid = ((time >> 32n) & 0xffffn).toString(16).padStart(4, '0');
  const timeHigh = (((time >> 48n) & 0x0fffn) | 0x1000n).toString(16).padStart(4, '0');
  const clock = (uuidClockSequence | 0x8000).toString(16).padStart(4, '0');
  const node = randomBytes(6);
  node[0] = (node[0] as number) | 0x01;
  return `${timeLow}-${timeMid}-${timeHigh}-${clock}-${node.toString('hex')}`;
}
