/**
 * Test helpers that watch Supabase Realtime on the wire: a `ws` transport for supabase-js that records every
 * frame in both directions, a raw Phoenix client, and status recorders with bounded waits.
 */
import { createClient, type RealtimeChannel, type SupabaseClient } from '@supabase/supabase-js';
import WebSocket from 'ws';

/** A serializer version. */
export type Vsn = '1.0.0' | '2.0.0';

/** A decoded Phoenix message (`joinRef` is undefined for V1 server frames, which have no join_ref). */
export interface WireMessage {
  readonly joinRef: string | null | undefined;
  readonly ref: string | null;
  readonly topic: string;
  readonly event: string;
  // biome-ignore lint/suspicious/noExplicitAny: test assertions dig into arbitrary JSON payloads
  readonly payload: any;
}

/** One recorded frame. */
export interface WireFrame {
  readonly dir: 'in' | 'out';
  /** Index of the socket (0 = first connection of the client). */
  readonly socket: number;
  readonly binary: boolean;
  /** Text frames as sent; binary frames as bytes. */
  readonly text?: string;
  readonly bytes?: Buffer;
  /** Parsed JSON of a text frame (array for 2.0.0, object for 1.0.0). */
  readonly json?: unknown;
  /** Decoded message (text frames and binary kinds 3/4). */
  readonly message?: WireMessage;
  /** First byte of a binary frame. */
  readonly kind?: number;
}

const DEFAULT_WAIT_MS = 15_000;

/** Decode a text frame as a client sees it. */
export function decodeText(text: string): { json: unknown; message: WireMessage | undefined } {
  const json: unknown = JSON.parse(text);
  if (Array.isArray(json)) {
    const [joinRef, ref, topic, event, payload] = json as [
      string | null,
      string | null,
      string,
      string,
      unknown,
    ];
    return { json, message: { joinRef, ref, topic, event, payload } };
  }
  if (json && typeof json === 'object') {
    const map = json as Record<string, unknown>;
    return {
      json,
      message: {
        joinRef: map.join_ref as string | null | undefined,
        ref: (map.ref as string | null | undefined) ?? null,
        topic: map.topic as string,
        event: map.event as string,
        payload: map.payload,
      },
    };
  }
  return { json, message: undefined };
}

/** Decode a binary user broadcast (kind 3 from a client, kind 4 from the server). */
export function decodeBinary(bytes: Buffer): { kind: number; message?: WireMessage; metadata?: string } {
  const kind = bytes[0] as number;
  if (kind === 3) {
    const sizes = [bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]] as number[];
    const encoding = bytes[6];
    let offset = 7;
    const fields = sizes.map((size) => {
      const field = bytes.subarray(offset, offset + size).toString('utf8');
      offset += size;
      return field;
    });
    const body = bytes.subarray(offset);
    return {
      kind,
      metadata: fields[4],
      message: {
        joinRef: fields[0] as string,
        ref: fields[1] as string,
        topic: fields[2] as string,
        event: 'broadcast',
        payload: {
          event: fields[3],
          payload: encoding === 1 ? JSON.parse(body.toString('utf8')) : Buffer.from(body),
        },
      },
    };
  }
  if (kind === 4) {
    const topicSize = bytes[1] ?? 0;
    const eventSize = bytes[2] ?? 0;
    const metadataSize = bytes[3] ?? 0;
    const encoding = bytes[4];
    let offset = 5;
    const topic = bytes.subarray(offset, offset + topicSize).toString('utf8');
    offset += topicSize;
    const event = bytes.subarray(offset, offset + eventSize).toString('utf8');
    offset += eventSize;
    const metadata = bytes.subarray(offset, offset + metadataSize).toString('utf8');
    offset += metadataSize;
    const body = bytes.subarray(offset);
    return {
      kind,
      metadata,
      message: {
        joinRef: null,
        ref: null,
        topic,
        event: 'broadcast',
        payload: {
          type: 'broadcast',
          event,
          payload: encoding === 1 ? JSON.parse(body.toString('utf8')) : Buffer.from(body),
          ...(metadataSize > 0 ? { meta: JSON.parse(metadata) } : {}),
        },
      },
    };
  }
  return { kind };
}

/** Records every frame of every connection a supabase-js client makes. */
export class WireLog {
  readonly frames: WireFrame[] = [];
  readonly sockets: WebSocket[] = [];
  readonly urls: string[] = [];
  /** Closes the client started itself (`close(code, reason)` calls). */
  readonly clientCloses: Array<{ socket: number; code: number | undefined; reason: string | undefined }> = [];
  /** Close events as the client saw them (code and reason of the closing handshake). */
  readonly closeEvents: Array<{ socket: number; code: number; reason: string }> = [];
  readonly #waiters = new Set<() => void>();

  /** A `ws` subclass to pass as `realtime.transport`. */
  transport(): typeof WebSocket {
    const log = this;
    class SniffingWebSocket extends WebSocket {
      readonly #index: number;
      constructor(url: string | URL | null, protocols?: WebSocket.ClientOptions | string | string[]) {
        super(url as string | URL, protocols as string | string[] | undefined);
        this.#index = log.sockets.length;
        log.sockets.push(this);
        log.urls.push(String(url));
        this.on('message', (data, isBinary) => {
          const buffer = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer);
          log.record('in', this.#index, isBinary ? buffer : buffer.toString('utf8'));
        });
        this.on('close', (code, reason) => {
          log.closeEvents.push({ socket: this.#index, code, reason: reason.toString() });
          setImmediate(() => log.wake());
        });
      }
      override send(data: unknown, ...rest: unknown[]): void {
        const frame =
          typeof data === 'string'
            ? data
            : data instanceof ArrayBuffer
              ? Buffer.from(new Uint8Array(data))
              : Buffer.from(data as Uint8Array);
        log.record('out', this.#index, frame);
        (super.send as (...args: unknown[]) => void)(data, ...rest);
      }
      override close(code?: number, reason?: string | Buffer): void {
        log.clientCloses.push({ socket: this.#index, code, reason: reason?.toString() });
        super.close(code, reason);
      }
    }
    return SniffingWebSocket as unknown as typeof WebSocket;
  }

  /** Record a frame (used by the transport). */
  record(dir: 'in' | 'out', socket: number, data: string | Buffer): void {
    let frame: WireFrame;
    if (typeof data === 'string') {
      const { json, message } = decodeText(data);
      frame = { dir, socket, binary: false, text: data, json, ...(message ? { message } : {}) };
    } else {
      const decoded = decodeBinary(data);
      frame = {
        dir,
        socket,
        binary: true,
        bytes: data,
        kind: decoded.kind,
        ...(decoded.message ? { message: decoded.message } : {}),
      };
    }
    this.frames.push(frame);
    // Let the client handle the frame first, so waits on client state see its effect.
    setImmediate(() => this.wake());
  }

  /** Re-run pending waits. */
  wake(): void {
    for (const wake of [...this.#waiters]) wake();
  }

  /** Wait until `check` returns a value (re-checked whenever a frame or close event arrives). */
  until<T>(check: () => T | undefined | false, what: string, timeoutMs = DEFAULT_WAIT_MS): Promise<T> {
    return new Promise((resolve, reject) => {
      const attempt = () => {
        const value = check();
        if (value === undefined || value === false) return false;
        cleanup();
        resolve(value);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
      };
      const wake = () => {
        attempt();
      };
      if (!attempt()) this.#waiters.add(wake);
    });
  }

  /** Current position, to look only at later frames. */
  mark(): number {
    return this.frames.length;
  }

  /** Frames since `mark` matching `predicate`. */
  since(mark: number, predicate: (frame: WireFrame) => boolean = () => true): WireFrame[] {
    return this.frames.slice(mark).filter(predicate);
  }

  /** Messages (decoded) in direction `dir` since `mark`. */
  messages(
    dir: 'in' | 'out',
    mark = 0,
    predicate: (message: WireMessage) => boolean = () => true,
  ): WireMessage[] {
    return this.frames
      .slice(mark)
      .filter((frame) => frame.dir === dir && frame.message !== undefined && predicate(frame.message))
      .map((frame) => frame.message as WireMessage);
  }

  /** Wait for the first frame at or after `from` matching `predicate`. */
  waitFor(
    predicate: (frame: WireFrame) => boolean,
    what: string,
    { from = 0, timeoutMs = DEFAULT_WAIT_MS }: { from?: number; timeoutMs?: number } = {},
  ): Promise<WireFrame> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.frames.slice(from).find(predicate);
        if (!found) return false;
        cleanup();
        resolve(found);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
      };
      const wake = () => {
        check();
      };
      if (!check()) this.#waiters.add(wake);
    });
  }

  /** Wait for an inbound message matching `predicate`. */
  async waitForIn(
    predicate: (message: WireMessage) => boolean,
    what: string,
    options?: { from?: number; timeoutMs?: number },
  ): Promise<WireMessage> {
    const frame = await this.waitFor(
      (candidate) =>
        candidate.dir === 'in' && candidate.message !== undefined && predicate(candidate.message),
      what,
      options,
    );
    return frame.message as WireMessage;
  }

  /** Wait for an outbound message matching `predicate`. */
  async waitForOut(
    predicate: (message: WireMessage) => boolean,
    what: string,
    options?: { from?: number; timeoutMs?: number },
  ): Promise<WireMessage> {
    const frame = await this.waitFor(
      (candidate) =>
        candidate.dir === 'out' && candidate.message !== undefined && predicate(candidate.message),
      what,
      options,
    );
    return frame.message as WireMessage;
  }
}

/** Options of {@link wireClient}. */
export interface WireClientOptions {
  /** Omit for the client's default (2.0.0). */
  readonly vsn?: Vsn;
  /** API key; default the anon key. */
  readonly key?: string;
  readonly heartbeatIntervalMs?: number;
  /** Third-party auth: the token supabase-js hands to Realtime (and REST). */
  readonly accessToken?: () => Promise<string>;
}

/** An unmodified supabase-js client whose Realtime frames are recorded. */
export function wireClient(
  stack: { readonly url: string; readonly anonKey: string },
  options: WireClientOptions = {},
): { supabase: SupabaseClient; wire: WireLog } {
  const wire = new WireLog();
  const supabase = createClient(stack.url, options.key ?? stack.anonKey, {
    realtime: {
      transport: wire.transport() as unknown as typeof globalThis.WebSocket,
      ...(options.vsn === undefined ? {} : { vsn: options.vsn }),
      ...(options.heartbeatIntervalMs === undefined
        ? {}
        : { heartbeatIntervalMs: options.heartbeatIntervalMs }),
    },
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    ...(options.accessToken === undefined ? {} : { accessToken: options.accessToken }),
  });
  return { supabase, wire };
}

/** Subscribe-callback statuses of a channel, with waits. */
export class StatusLog {
  readonly entries: Array<{ status: string; error: Error | undefined }> = [];
  readonly #waiters = new Set<() => void>();

  /** The callback to pass to `subscribe`. */
  readonly callback = (status: string, error?: Error): void => {
    this.entries.push({ status, error });
    for (const wake of [...this.#waiters]) wake();
  };

  /** Statuses in order. */
  get statuses(): string[] {
    return this.entries.map((entry) => entry.status);
  }

  /** Wait for the first entry at or after index `from` whose status is one of `statuses`. */
  next(
    statuses: readonly string[],
    from = 0,
    timeoutMs = DEFAULT_WAIT_MS,
  ): Promise<{ status: string; error: Error | undefined }> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.entries.slice(from).find((entry) => statuses.includes(entry.status));
        if (!found) return false;
        cleanup();
        resolve(found);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${statuses}; saw ${this.statuses}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
      };
      const wake = () => {
        check();
      };
      if (!check()) this.#waiters.add(wake);
    });
  }

  /** Wait until `status` has been seen `count` times; returns that entry. */
  waitFor(
    status: string,
    { count = 1, timeoutMs = DEFAULT_WAIT_MS } = {},
  ): Promise<{ error: Error | undefined }> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hits = this.entries.filter((entry) => entry.status === status);
        if (hits.length < count) return false;
        cleanup();
        resolve(hits[count - 1] as { error: Error | undefined });
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(`Timed out after ${timeoutMs} ms waiting for ${status} #${count}; saw ${this.statuses}`),
        );
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
      };
      const wake = () => {
        check();
      };
      if (!check()) this.#waiters.add(wake);
    });
  }
}

/** Subscribe and wait for SUBSCRIBED; fails fast on CHANNEL_ERROR, TIMED_OUT or CLOSED. */
export async function subscribed(channel: RealtimeChannel, log = new StatusLog()): Promise<StatusLog> {
  const from = log.entries.length;
  channel.subscribe(log.callback);
  const entry = await log.next(['SUBSCRIBED', 'CHANNEL_ERROR', 'TIMED_OUT', 'CLOSED'], from);
  if (entry.status !== 'SUBSCRIBED') {
    throw new Error(`${entry.status} while subscribing to ${channel.topic}: ${entry.error?.message}`);
  }
  return log;
}

/** Collects callback arguments and waits for them. */
export class Inbox<T> {
  readonly items: T[] = [];
  readonly #waiters = new Set<() => void>();

  /** The callback to register. */
  readonly push = (item: T): void => {
    this.items.push(item);
    for (const wake of [...this.#waiters]) wake();
  };

  /** Wait for the first item (at or after index `from`) matching `predicate`. */
  waitFor(
    predicate: (item: T) => boolean,
    what: string,
    { from = 0, timeoutMs = DEFAULT_WAIT_MS }: { from?: number; timeoutMs?: number } = {},
  ): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.items.slice(from).find(predicate);
        if (found === undefined) return false;
        cleanup();
        resolve(found);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
      };
      const wake = () => {
        check();
      };
      if (!check()) this.#waiters.add(wake);
    });
  }
}

/** A bare Phoenix client over `ws`, to send and inspect exact frames. */
export class RawClient {
  readonly inbox = new Inbox<WireFrame>();

  private constructor(
    readonly ws: WebSocket,
    readonly vsn: Vsn,
  ) {
    ws.on('message', (data, isBinary) => {
      const buffer = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer);
      if (isBinary) {
        const decoded = decodeBinary(buffer);
        this.inbox.push({
          dir: 'in',
          socket: 0,
          binary: true,
          bytes: buffer,
          kind: decoded.kind,
          ...(decoded.message ? { message: decoded.message } : {}),
        });
      } else {
        const text = buffer.toString('utf8');
        const { json, message } = decodeText(text);
        this.inbox.push({ dir: 'in', socket: 0, binary: false, text, json, ...(message ? { message } : {}) });
      }
    });
  }

  /** Connect to `<base>/realtime/v1/websocket?apikey=...&vsn=...`. */
  static connect(baseUrl: string, apikey: string, vsn: Vsn): Promise<RawClient> {
    const url = `${baseUrl.replace(/^http/, 'ws')}/realtime/v1/websocket?apikey=${encodeURIComponent(apikey)}&vsn=${vsn}`;
    const ws = new WebSocket(url);
    const client = new RawClient(ws, vsn);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('error', reject);
    });
  }

  /** Send a message in this client's serializer. */
  send(joinRef: string | null, ref: string | null, topic: string, event: string, payload: unknown): void {
    this.ws.send(
      this.vsn === '2.0.0'
        ? JSON.stringify([joinRef, ref, topic, event, payload])
        : JSON.stringify({ topic, event, payload, ref, join_ref: joinRef }),
    );
  }

  /** Join `topic` and wait for the reply. */
  async join(
    topic: string,
    joinRef: string,
    config: Record<string, unknown> = {},
    extra: Record<string, unknown> = {},
  ) {
    const from = this.inbox.items.length;
    this.send(joinRef, joinRef, topic, 'phx_join', {
      config: {
        broadcast: { ack: false, self: false },
        presence: { key: '', enabled: false },
        postgres_changes: [],
        private: false,
        ...config,
      },
      ...extra,
    });
    return this.next(
      (message) => message.event === 'phx_reply' && message.ref === joinRef,
      `join reply ${topic}`,
      from,
    );
  }

  /** Wait for an inbound message matching `predicate` (at or after index `from`). */
  async next(predicate: (message: WireMessage) => boolean, what: string, from = 0): Promise<WireMessage> {
    const frame = await this.inbox.waitFor(
      (item) => item.message !== undefined && predicate(item.message),
      what,
      {
        from,
      },
    );
    return frame.message as WireMessage;
  }

  /** Heartbeat and wait for its reply: everything the server sent before it has arrived. */
  async barrier(ref: string): Promise<number> {
    const from = this.inbox.items.length;
    this.send(null, ref, 'phoenix', 'heartbeat', {});
    await this.next(
      (message) => message.topic === 'phoenix' && message.ref === ref,
      `heartbeat ${ref}`,
      from,
    );
    return this.inbox.items.findIndex((item, index) => index >= from && item.message?.ref === ref);
  }

  /** Close and wait for the socket to finish closing. */
  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close();
    });
  }
}

/** A channel name unique to this test run. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Math.random().toString(36).slice(2, 10)}`;
}
