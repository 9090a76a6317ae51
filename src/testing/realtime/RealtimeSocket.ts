/**
 * One WebSocket connection of the local Realtime server, modelled on Phoenix's socket process: frames are
 * handled one at a time and a join blocks the socket until it is answered (including the server's delay
 * before join errors, during which even heartbeats wait); pushes to joined channels are handed to the
 * channel and handled in the channel's own order.
 *
 * @internal
 * @packageDocumentation
 */
import { type RawData, WebSocket } from 'ws';
import type { JwtClaims } from '../internal/contracts';
import type { DeliveryKind } from '../StackCounters';
import type { RealtimeContext } from './context';
import { RealtimeChannel } from './RealtimeChannel';
import {
  decodeFrame,
  encodeMessage,
  type InboundFrame,
  type PhoenixMessage,
  type SerializerVersion,
} from './serializer';

let nextSocketId = 1;

/** A connected client socket. */
export class RealtimeSocket {
  readonly id = nextSocketId++;
  readonly channels = new Map<string, RealtimeChannel>();
  #closed = false;
  #queue: Promise<void> = Promise.resolve();
  #cancelIdle: (() => void) | undefined;

  constructor(
    readonly context: RealtimeContext,
    readonly ws: WebSocket,
    readonly vsn: SerializerVersion,
    /** The connect token (the validated `apikey`/`x-api-key`), used when a join has no `access_token`. */
    readonly connectToken: string,
    readonly connectClaims: JwtClaims,
  ) {
    ws.on('message', (data, isBinary) => this.#onFrame(data, isBinary));
    ws.on('ping', () => this.#resetIdle());
    ws.on('pong', () => this.#resetIdle());
    ws.on('close', () => this.#onClose());
    ws.on('error', (error) => context.log(`socket ${this.id} error`, error));
    this.#resetIdle();
  }

  /** True once the connection is gone. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Write an encoded frame and count it. */
  sendFrame(kind: DeliveryKind, frame: string | Buffer): void {
    if (this.#closed || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(frame, { binary: typeof frame !== 'string' });
    this.context.counters.countDelivery(kind);
  }

  /** Encode and write one message. */
  send(kind: DeliveryKind, message: PhoenixMessage): void {
    this.sendFrame(kind, encodeMessage(this.vsn, message));
  }

  /** Write a `phx_reply`. */
  reply(
    joinRef: string | null,
    ref: string | null,
    topic: string,
    status: 'ok' | 'error',
    response: unknown,
  ): void {
    this.send('reply', { joinRef, ref, topic, event: 'phx_reply', payload: { status, response } });
  }

  /** Close the connection from the server side. */
  close(code: number, reason = ''): void {
    if (this.#closed) return;
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(code, reason);
    }
    // Tear the channels down at once; the 'close' event follows the closing handshake.
    this.#onClose();
  }

  /** Forget a channel that stopped (only if it is still the one registered for its topic). */
  forget(channel: RealtimeChannel): void {
    if (this.channels.get(channel.topic) === channel) this.channels.delete(channel.topic);
  }

  #resetIdle(): void {
    this.#cancelIdle?.();
    if (this.#closed || !Number.isFinite(this.context.idleTimeoutMs)) return;
    this.#cancelIdle = this.context.schedule(this.context.idleTimeoutMs, () => {
      this.context.log(`socket ${this.id} idle for ${this.context.idleTimeoutMs} ms: closing`);
      this.close(1000);
    });
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelIdle?.();
    for (const channel of [...this.channels.values()]) channel.terminate();
    this.channels.clear();
    this.context.socketClosed(this);
  }

  #onFrame(data: RawData, isBinary: boolean): void {
    this.#resetIdle();
    const buffer = Array.isArray(data)
      ? Buffer.concat(data)
      : Buffer.isBuffer(data)
        ? data
        : Buffer.from(data as ArrayBuffer);
    let frame: InboundFrame;
    try {
      frame = decodeFrame(this.vsn, buffer, isBinary);
    } catch (error) {
      // The real server logs MalformedWebSocketMessage and carries on.
      this.context.log(`socket ${this.id}: malformed frame ignored`, error);
      return;
    }
    this.#queue = this.#queue
      .then(() => this.#handle(frame))
      .catch((error: unknown) => this.context.log(`socket ${this.id}: handler failed`, error));
  }

  async #handle(frame: InboundFrame): Promise<void> {
    if (this.#closed) return;
    if (frame.type === 'user_broadcast_push') {
      const { push } = frame;
      const channel = this.channels.get(push.topic);
      if (!channel) {
        this.reply(null, push.ref, push.topic, 'error', { reason: 'unmatched topic' });
      } else if (channel.wireJoinRef === null || channel.wireJoinRef === push.joinRef) {
        channel.deliverPush(push);
      }
      return;
    }
    const message = frame.message;
    if (message.topic === 'phoenix' && message.event === 'heartbeat') {
      this.reply(null, message.ref, 'phoenix', 'ok', {});
      return;
    }
    const channel = this.channels.get(message.topic);
    if (message.event === 'phx_join') {
      await this.#join(message, channel);
      return;
    }
    if (!channel) {
      if (message.event === 'phx_leave') {
        // Trap 3: a leave for a topic we do not have gets a plain ok and nothing else.
        this.reply(message.joinRef, message.ref, message.topic, 'ok', {});
      } else {
        this.reply(null, message.ref, message.topic, 'error', { reason: 'unmatched topic' });
      }
      return;
    }
    // A push carrying an older join_ref raced a server-side close: Phoenix drops it without a reply.
    if (channel.wireJoinRef !== null && message.joinRef !== channel.wireJoinRef) return;
    channel.deliver(message);
  }

  async #join(message: PhoenixMessage, existing: RealtimeChannel | undefined): Promise<void> {
    if (!message.topic.startsWith('realtime:')) {
      this.reply(null, message.ref, message.topic, 'error', { reason: 'unmatched topic' });
      return;
    }
    let closeExisting: (() => void) | undefined;
    if (existing) {
      // Duplicate join: Phoenix shuts the old channel down, then sends its phx_close after this join's reply.
      existing.terminate();
      this.channels.delete(existing.topic);
      closeExisting = () => existing.sendClose();
    }
    // On success the channel registers itself in `channels` just before its reply goes out.
    await new RealtimeChannel(this.context, this, message).join(message.payload, closeExisting);
  }
}
