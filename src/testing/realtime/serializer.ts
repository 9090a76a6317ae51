/**
 * Wire frames of Supabase Realtime's Phoenix socket, for both serializer versions.
 *
 * - `1.0.0` (Phoenix's V1 JSON serializer): text frames holding JSON objects. The client sends
 *   `{topic, event, payload, ref, join_ref}`; the server sends `{topic, event, payload, ref}` (no join_ref).
 * - `2.0.0` (Realtime's V2 serializer): text frames holding `[join_ref, ref, topic, event, payload]`, plus two
 *   binary kinds for user broadcasts: kind 3 ("user broadcast push", client to server) and kind 4 ("user
 *   broadcast", server to client). The client can only decode kind 4, so this module never encodes any other
 *   binary kind.
 *
 * @packageDocumentation
 */

/** A serializer version the client asks for with the `vsn` query parameter. */
export type SerializerVersion = '1.0.0' | '2.0.0';

/** A Phoenix message in either direction, independent of the serializer. */
export interface PhoenixMessage {
  readonly joinRef: string | null;
  readonly ref: string | null;
  readonly topic: string;
  readonly event: string;
  readonly payload: unknown;
}

/** How a user broadcast payload is encoded in a binary frame. */
export type UserPayloadEncoding = 'json' | 'binary';

/** A decoded binary kind-3 frame: `channel.send({type: 'broadcast', ...})` from a `2.0.0` client. */
export interface UserBroadcastPush {
  readonly joinRef: string;
  readonly ref: string;
  readonly topic: string;
  readonly userEvent: string;
  readonly encoding: UserPayloadEncoding;
  /** The raw user payload: JSON text for `json`, opaque bytes for `binary`. */
  readonly payload: Buffer;
  /** Parsed metadata (only `persist` is sent by the client), `{}` when empty. */
  readonly metadata: Record<string, unknown>;
}

/** One decoded inbound frame. */
export type InboundFrame =
  | { readonly type: 'message'; readonly message: PhoenixMessage }
  | { readonly type: 'user_broadcast_push'; readonly push: UserBroadcastPush };

/** Thrown for frames the server cannot decode (the real server logs and ignores them). */
export class MalformedFrameError extends Error {
  override readonly name = 'MalformedFrameError';
}

const KIND_USER_BROADCAST_PUSH = 3;
const KIND_USER_BROADCAST = 4;
const MAX_HEADER_FIELD_BYTES = 255;

/**
 * Pick the serializer for the `vsn` query parameter the way Phoenix does: a missing `vsn` means `1.0.0`;
 * otherwise it must be a valid semantic version matching `~> 1.0.0` or `~> 2.0.0`.
 *
 * @returns the serializer, or `undefined` when the server refuses the connection (HTTP 403).
 */
export function negotiateSerializer(vsn: string | null | undefined): SerializerVersion | undefined {
  if (vsn === null || vsn === undefined) return '1.0.0';
  const match = /^(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/.exec(vsn);
  if (!match || match[4] !== undefined) return undefined;
  const major = Number(match[1]);
  const minor = Number(match[2]);
  if (major === 1 && minor === 0) return '1.0.0';
  if (major === 2 && minor === 0) return '2.0.0';
  return undefined;
}

/** Encode a message as the text frame `vsn` expects. */
export function encodeMessage(vsn: SerializerVersion, message: PhoenixMessage): string {
  if (vsn === '2.0.0') {
    return JSON.stringify([message.joinRef, message.ref, message.topic, message.event, message.payload]);
  }
  return JSON.stringify({
    topic: message.topic,
    event: message.event,
    payload: message.payload,
    ref: message.ref,
  });
}

/**
 * Encode a binary kind-4 user broadcast (server to a `2.0.0` client).
 *
 * @param metadata - JSON object text, or undefined for none (the client then adds no `meta`).
 */
export function encodeUserBroadcast(
  topic: string,
  userEvent: string,
  encoding: UserPayloadEncoding,
  payload: Uint8Array,
  metadata?: string,
): Buffer {
  const topicBytes = Buffer.from(topic, 'utf8');
  const eventBytes = Buffer.from(userEvent, 'utf8');
  const metadataBytes = Buffer.from(metadata ?? '', 'utf8');
  for (const [name, bytes] of [
    ['topic', topicBytes],
    ['user_event', eventBytes],
    ['metadata', metadataBytes],
  ] as const) {
    if (bytes.length > MAX_HEADER_FIELD_BYTES) {
      throw new RangeError(`unable to convert ${name} to binary: ${bytes.length} bytes is over 255`);
    }
  }
  const header = Buffer.from([
    KIND_USER_BROADCAST,
    topicBytes.length,
    eventBytes.length,
    metadataBytes.length,
    encoding === 'json' ? 1 : 0,
  ]);
  return Buffer.concat([header, topicBytes, eventBytes, metadataBytes, payload]);
}

/**
 * Decode one inbound frame.
 *
 * @throws {@link MalformedFrameError} when the frame does not fit the serializer.
 */
export function decodeFrame(vsn: SerializerVersion, data: Buffer, isBinary: boolean): InboundFrame {
  if (isBinary) {
    if (vsn !== '2.0.0') throw new MalformedFrameError('binary frames need serializer 2.0.0');
    return { type: 'user_broadcast_push', push: decodeUserBroadcastPush(data) };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.toString('utf8'));
  } catch (error) {
    throw new MalformedFrameError(`invalid JSON: ${(error as Error).message}`);
  }
  return { type: 'message', message: vsn === '2.0.0' ? fromV2(parsed) : fromV1(parsed) };
}

function fromV2(parsed: unknown): PhoenixMessage {
  if (!Array.isArray(parsed) || parsed.length < 5) {
    throw new MalformedFrameError('expected V2 array');
  }
  const [joinRef, ref, topic, event, payload] = parsed as unknown[];
  if (typeof topic !== 'string' || typeof event !== 'string') {
    throw new MalformedFrameError('topic and event must be strings');
  }
  return { joinRef: refOrNull(joinRef), ref: refOrNull(ref), topic, event, payload };
}

function fromV1(parsed: unknown): PhoenixMessage {
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new MalformedFrameError('V1 JSON serializer expected a map');
  }
  const map = parsed as Record<string, unknown>;
  if (typeof map.topic !== 'string' || typeof map.event !== 'string' || !('payload' in map)) {
    throw new MalformedFrameError('V1 message needs topic, event and payload');
  }
  return {
    joinRef: refOrNull(map.join_ref),
    ref: refOrNull(map.ref),
    topic: map.topic,
    event: map.event,
    payload: map.payload,
  };
}

function refOrNull(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  return typeof value === 'string' ? value : String(value);
}

function decodeUserBroadcastPush(data: Buffer): UserBroadcastPush {
  if (data.length < 7 || data[0] !== KIND_USER_BROADCAST_PUSH) {
    throw new MalformedFrameError(`unsupported binary frame kind ${data[0] ?? 'none'}`);
  }
  const sizes = [data[1], data[2], data[3], data[4], data[5]] as number[];
  const encodingByte = data[6];
  let offset = 7;
  const fields: string[] = [];
  for (const size of sizes) {
    if (offset + size > data.length) throw new MalformedFrameError('binary frame is truncated');
    fields.push(data.subarray(offset, offset + size).toString('utf8'));
    offset += size;
  }
  const [joinRef, ref, topic, userEvent, metadataText] = fields as [string, string, string, string, string];
  let metadata: Record<string, unknown> = {};
  if (metadataText.length > 0) {
    try {
      const parsed: unknown = JSON.parse(metadataText);
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
        metadata = parsed as Record<string, unknown>;
      }
    } catch {
      throw new MalformedFrameError('binary frame metadata is not JSON');
    }
  }
  return {
    joinRef,
    ref,
    topic,
    userEvent,
    encoding: encodingByte === 0 ? 'binary' : 'json',
    payload: Buffer.from(data.subarray(offset)),
    metadata,
  };
}
