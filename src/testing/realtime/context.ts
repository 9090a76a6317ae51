/**
 * What the sockets and channels of the local Realtime server need from the server itself.
 *
 * @internal
 * @packageDocumentation
 */

import type { JwtClaims, JwtFailureKind, RealtimeDatabaseBridge } from '../internal/contracts';
import type { StackCounters } from '../StackCounters';
import type { PresenceDiff, PresenceTracker } from './PresenceTracker';
import type { RealtimeQuotas } from './quotas';
import type { RateCounter } from './RateCounter';
import type { RealtimeChannel } from './RealtimeChannel';
import type { RealtimeSocket } from './RealtimeSocket';
import type { UserPayloadEncoding } from './serializer';

/** Result of checking a token the way the server's `confirm_token` does. */
export type TokenCheck =
  | { readonly ok: true; readonly claims: JwtClaims; readonly expiresInSeconds: number }
  | { readonly ok: false; readonly kind: JwtFailureKind | 'unknown'; readonly expiredSecondsAgo: number };

/** A broadcast on its way to a room. */
export type OutboundBroadcast =
  | {
      /** A JSON broadcast (V1 clients, the batch REST API): delivered as a text frame to everyone. */
      readonly type: 'json';
      readonly payload: Readonly<Record<string, unknown>>;
    }
  | {
      /** A user broadcast (binary push, single REST API, database): binary kind 4 to `2.0.0` receivers. */
      readonly type: 'user';
      readonly userEvent: string;
      readonly encoding: UserPayloadEncoding;
      readonly payload: Buffer;
      readonly metadata?: Readonly<Record<string, unknown>>;
    };

/** Tenant-wide rate counters. */
export interface TenantRates {
  readonly joins: RateCounter;
  readonly events: RateCounter;
  readonly dbEvents: RateCounter;
  readonly presence: RateCounter;
}

/** The server as its sockets and channels see it. */
export interface RealtimeContext {
  readonly bridge: RealtimeDatabaseBridge;
  readonly counters: StackCounters;
  readonly quotas: RealtimeQuotas;
  readonly rates: TenantRates;
  readonly presence: PresenceTracker<RealtimeChannel>;
  readonly joinErrorMs: number;
  readonly postgresSubscribeDelayMs: number;
  readonly idleTimeoutMs: number;
  readonly privateOnly: boolean;
  /** True once `close()` started: joins fail with `RealtimeRestarting`. */
  readonly closing: boolean;
  now(): number;
  /** Run `callback` after `ms`; returns a cancel function. Cleared on `close()`. */
  schedule(ms: number, callback: () => void): () => void;
  /** Resolves after `ms` (never, if the server closes first). */
  delay(ms: number): Promise<void>;
  checkToken(token: string): Promise<TokenCheck>;
  log(message: string, detail?: unknown): void;
  /** Sockets that joined a channel (the concurrent-users figure). */
  isUser(socket: RealtimeSocket): boolean;
  userCount(): number;
  addUser(socket: RealtimeSocket): void;
  addToRoom(channel: RealtimeChannel): void;
  removeFromRoom(channel: RealtimeChannel): void;
  fanOutBroadcast(room: string, message: OutboundBroadcast, exclude?: RealtimeChannel): void;
  fanOutPresenceDiff(room: string, diff: PresenceDiff): void;
  activatePostgres(channel: RealtimeChannel): void;
  deactivatePostgres(channel: RealtimeChannel): void;
  socketClosed(socket: RealtimeSocket): void;
}

/** The pub/sub space of a channel: public and private channels of one name never meet. */
export function roomKey(isPrivate: boolean, subTopic: string): string {
  return `${isPrivate ? 'private' : 'public'}:${subTopic}`;
}

/** Payload size as the server measures it (`max_payload_size_in_kb * 1000 + 500` bytes allowed). */
export function payloadTooLarge(bytes: number, quotas: RealtimeQuotas): boolean {
  return bytes > quotas.maxPayloadSizeInKb * 1000 + 500;
}

/** Byte size of a JSON value, the stand-in for Erlang's external term size. */
export function jsonByteSize(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? 'null', 'utf8');
}

/** True for a plain JSON object (not an array, not null). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
