import WebSocket from 'ws';
import type { LocalSupabase } from '../../src/testing/index';
import { RawClient } from './realtimeWire';

interface Diff {
  readonly joins: Record<string, { metas: Record<string, unknown>[] }>;
  readonly leaves: Record<string, { metas: Record<string, unknown>[] }>;
}

/**
 * A bare Phoenix client joined to every given presence channel, replaying the server's presence diffs in the
 * order the server sent them (one socket: one ordered stream). It checks that no user (the `user_id` of a
 * tracked payload) is ever present in two channels at once, and counts every frame it received so callers can
 * subtract its own deliveries from the stack's counters.
 */
export class PresenceObserver {
  /** Frames this observer received (all of them are counted by the stack as deliveries). */
  frames = 0;
  /** Of which presence events (`presence_state` + `presence_diff`). */
  presenceFrames = 0;
  /** Every moment a user was seen in two channels at once. */
  readonly violations: string[] = [];
  /** Tracks seen per user (moves included). */
  readonly tracksPerUser = new Map<string, number>();
  /** user id -> channel -> refs present. */
  readonly #where = new Map<string, Map<string, Set<string>>>();
  #heartbeat: ReturnType<typeof setInterval> | undefined;

  private constructor(readonly client: RawClient) {
    client.ws.on('message', (data, isBinary) => {
      this.frames += 1;
      if (isBinary) return;
      const text = (Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer)).toString('utf8');
      const frame = JSON.parse(text) as [string | null, string | null, string, string, unknown];
      const [, , topic, event, payload] = frame;
      if (event === 'presence_state') {
        this.presenceFrames += 1;
        this.#apply(topic, { joins: payload as Diff['joins'], leaves: {} });
      } else if (event === 'presence_diff') {
        this.presenceFrames += 1;
        this.#apply(topic, payload as Diff);
      }
    });
  }

  /** Connect with the anon key and join each channel with presence enabled. */
  static async start(stack: LocalSupabase, channels: readonly string[]): Promise<PresenceObserver> {
    const client = await RawClient.connect(stack.url, stack.anonKey, '2.0.0');
    const observer = new PresenceObserver(client);
    let ref = 1;
    for (const channel of channels) {
      const joinRef = String(ref++);
      await client.join(`realtime:${channel}`, joinRef, { presence: { key: '', enabled: true } });
    }
    observer.#heartbeat = setInterval(
      () => client.send(null, `hb${ref++}`, 'phoenix', 'heartbeat', {}),
      20_000,
    );
    return observer;
  }

  /** Users present in some channel right now. */
  presentUsers(): number {
    let n = 0;
    for (const rooms of this.#where.values()) if (rooms.size > 0) n += 1;
    return n;
  }

  async close(): Promise<void> {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    if (this.client.ws.readyState !== WebSocket.CLOSED) await this.client.close();
  }

  #apply(topic: string, diff: Diff): void {
    for (const metas of Object.values(diff.joins ?? {})) {
      for (const meta of metas.metas) {
        const userId = meta.user_id;
        const ref = meta.phx_ref;
        if (typeof userId !== 'string' || typeof ref !== 'string') continue;
        this.tracksPerUser.set(userId, (this.tracksPerUser.get(userId) ?? 0) + 1);
        let rooms = this.#where.get(userId);
        if (!rooms) {
          rooms = new Map();
          this.#where.set(userId, rooms);
        }
        const refs = rooms.get(topic) ?? new Set<string>();
        refs.add(ref);
        rooms.set(topic, refs);
      }
    }
    for (const metas of Object.values(diff.leaves ?? {})) {
      for (const meta of metas.metas) {
        const userId = meta.user_id;
        const ref = meta.phx_ref;
        if (typeof userId !== 'string' || typeof ref !== 'string') continue;
        const rooms = this.#where.get(userId);
        const refs = rooms?.get(topic);
        refs?.delete(ref);
        if (refs && refs.size === 0) rooms?.delete(topic);
      }
    }
    for (const metas of Object.values(diff.joins ?? {})) {
      for (const meta of metas.metas) {
        const userId = meta.user_id;
        if (typeof userId !== 'string') continue;
        const rooms = this.#where.get(userId);
        if (rooms && rooms.size > 1) this.violations.push(`${userId} in ${[...rooms.keys()].join(' and ')}`);
      }
    }
  }
}
