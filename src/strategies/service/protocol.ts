/**
 * The service tier's WebSocket protocol (version 1): the frames a client and a `supabase-matchmaker/server`
 * node exchange, shared by both sides. Browser-safe. Described for humans in `docs/service-protocol.md`.
 *
 * @packageDocumentation
 */
import type { CancelReason, SearchCriteria } from '../../core/types';
import { validateCriteria } from '../../core/validation';

/** The protocol version this package speaks; every frame carries it as `v`. */
export const SERVICE_PROTOCOL_VERSION = 1;

/** Longest request id, search id or token accepted, in characters. */
export const MAX_ID_LENGTH = 128;
/** Longest access token accepted, in characters. */
export const MAX_TOKEN_LENGTH = 16_384;

/**
 * Codes of `error` frames.
 *
 * @remarks Stable across minor versions; clients branch on them, never on messages.
 */
export const ServiceErrorCode = {
  /** The frame is not valid JSON, or not a valid frame (the message says which field). Nothing changed. */
  InvalidFrame: 'invalid_frame',
  /** The frame is larger than the server's limit. Nothing changed. */
  FrameTooLarge: 'frame_too_large',
  /** The frame's `v` is not a protocol version the server speaks. */
  UnsupportedProtocol: 'unsupported_protocol',
  /** A frame other than `hello` or `heartbeat` arrived before a successful `hello`. */
  Unauthenticated: 'unauthenticated',
  /** The access token was refused (bad signature, expired, wrong audience or issuer, no `sub`). */
  Unauthorized: 'unauthorized',
  /** The ticket named in the frame belongs to another user, or `hello` tried to switch user. */
  Forbidden: 'forbidden',
  /** Too many joins from this user; wait and retry. */
  RateLimited: 'rate_limited',
  /** The queue (Redis) cannot be reached; the search is kept and resumes when it is back. */
  Unavailable: 'unavailable',
  /** This node is shutting down; reconnect (to another node) and resume. */
  Draining: 'draining',
  /** Anything else. */
  Internal: 'internal',
} as const;

/** Union of {@link ServiceErrorCode} values. */
export type ServiceErrorCode = (typeof ServiceErrorCode)[keyof typeof ServiceErrorCode];

/** WebSocket close codes the server uses. */
export const ServiceCloseCode = {
  /** Normal closure (the client asked, or `close()`). */
  Normal: 1000,
  /** The node is restarting or draining: reconnect, to another node if you can, and resume. */
  ServiceRestart: 1012,
  /** `hello` failed or the token expired: reconnect with a fresh token. */
  Unauthorized: 4001,
  /** No `hello` arrived in time, or heartbeats stopped. */
  Idle: 4002,
} as const;

/** Why a search ended without a match, as the server reports it. */
export type ServiceEndReason = Exclude<CancelReason, 'timeout' | 'closed'>;

const END_REASONS: ReadonlySet<string> = new Set<ServiceEndReason>([
  'user',
  'expired',
  'disconnected',
  'superseded',
  'rate_limited',
  'error',
]);

/** A match as it travels on the wire. */
export interface WireMatch {
  readonly matchId: string;
  /** Both users; the one who waited longer first. */
  readonly userIds: readonly [string, string];
  /** ISO 8601 creation time (Redis time of the pairing). */
  readonly createdAt: string;
  /** The criteria of the pool the match was made in (after any widening). */
  readonly criteria: SearchCriteria;
}

// ---------------------------------------------------------------------------------------------------------
// Client → server

/** Authenticate the connection with a Supabase access token. Must be the first frame; may be repeated with a fresh token for the same user. */
export interface HelloFrame {
  readonly v: typeof SERVICE_PROTOCOL_VERSION;
  readonly type: 'hello';
  readonly id: string;
  readonly token: string;
}

/**
 * Start (or resume) the search `searchId`. The user has one open ticket: a join while the user already has one
 * (another tab, another device) follows that ticket. With `resume`, the server first looks up that ticket.
 */
export interface JoinFrame {
  readonly v: typeof SERVICE_PROTOCOL_VERSION;
  readonly type: 'join';
  readonly id: string;
  readonly searchId: string;
  readonly criteria: SearchCriteria;
  /** The ticket id of a `queued` answer received earlier, to keep the search's place after a reconnect. */
  readonly resume?: string;
}

/** Withdraw the search. Atomic against pairing: the answer is `cancelled` or, when pairing won, `matched`. */
export interface CancelFrame {
  readonly v: typeof SERVICE_PROTOCOL_VERSION;
  readonly type: 'cancel';
  readonly id: string;
  readonly searchId: string;
  /** The search's ticket, when known (lets a fresh connection cancel without resuming first). */
  readonly ticketId?: string;
}

/** Keep the connection alive; answered by a `heartbeat` frame with the same id. */
export interface HeartbeatFrame {
  readonly v: typeof SERVICE_PROTOCOL_VERSION;
  readonly type: 'heartbeat';
  readonly id: string;
}

/** Every frame a client may send. */
export type ClientFrame = HelloFrame | JoinFrame | CancelFrame | HeartbeatFrame;

// ---------------------------------------------------------------------------------------------------------
// Server → client

/** Answer to a successful `hello`. */
export interface WelcomeFrame {
  readonly v: typeof SERVICE_PROTOCOL_VERSION;
  readonly type: 'welcome';
  readonly id: string;
  /** The user, from the token's `sub`. */
  readonly userId: string;
  /** The node serving this connection. */
  readonly nodeId: string;
  /** Send a `heartbeat` at least this often; the server closes connections silent for 2.5 times as long. */
  readonly heartbeatIntervalMs: number;
}

/** The search is held (answer to `join`, or a push when its ticket changed after a queue outage). */
export interface QueuedFrame {
  readonly v: typeof SERVICE_PROTOCOL_VERSION;
  readonly type: 'queued';
  /** The request id for an answer; absent for a push. */
  readonly id?: string;
  readonly searchId: string;
  /** The ticket; send it as `resume` after a reconnect. */
  readonly ticketId: string;
}

/** The search is matched (answer to `join` or `cancel`, or a push). */
export interface MatchedFrame {
  readonly v: typeof SERVICE_PROTOCOL_VERSION;
  readonly type: 'matched';
  readonly id?: string;
  readonly searchId: string;
  readonly ticketId: string;
  readonly match: WireMatch;
}

/**
 * The search ended without a match. As the answer to `cancel` (`id` set): `status` says whether this cancel
 * withdrew it (`cancelled`) or it had already ended (`not_searching`). As a push (no `id`): the backend ended it,
 * for `reason`.
 */
export interface CancelledFrame {
  readonly v: typeof SERVICE_PROTOCOL_VERSION;
  readonly type: 'cancelled';
  readonly id?: string;
  readonly searchId: string;
  readonly ticketId?: string;
  readonly status: 'cancelled' | 'not_searching';
  readonly reason: ServiceEndReason;
}

/** Answer to a `heartbeat`. */
export interface HeartbeatAckFrame {
  readonly v: typeof SERVICE_PROTOCOL_VERSION;
  readonly type: 'heartbeat';
  readonly id: string;
}

/** A request failed (`id` set; nothing changed) or a problem to report (push, `id` absent). */
export interface ErrorFrame {
  readonly v: typeof SERVICE_PROTOCOL_VERSION;
  readonly type: 'error';
  readonly id?: string;
  readonly code: ServiceErrorCode;
  readonly message: string;
  /** When set, the search this error is about (a push that ends nothing). */
  readonly searchId?: string;
}

/** Every frame a server may send. */
export type ServerFrame =
  | WelcomeFrame
  | QueuedFrame
  | MatchedFrame
  | CancelledFrame
  | HeartbeatAckFrame
  | ErrorFrame;

// ---------------------------------------------------------------------------------------------------------
// Validation

/** A frame that failed validation: the error frame to answer with. */
export interface FrameProblem {
  readonly ok: false;
  readonly code: ServiceErrorCode;
  readonly message: string;
  /** The frame's `id`, when one could be read, so the error answers the request. */
  readonly id?: string;
}

/** The result of {@link parseClientFrame}. */
export type ParsedClientFrame = { readonly ok: true; readonly frame: ClientFrame } | FrameProblem;

const TICKET_ID = /^\d{1,5}\.[0-9a-f]{32}$/;

/** True for a ticket id as the server issues them (`<bucket>.<32 hex digits>`). */
export function isTicketId(value: unknown): value is string {
  return typeof value === 'string' && TICKET_ID.test(value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isId(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_ID_LENGTH;
}

const CLIENT_FIELDS: Record<ClientFrame['type'], readonly string[]> = {
  hello: ['v', 'type', 'id', 'token'],
  join: ['v', 'type', 'id', 'searchId', 'criteria', 'resume'],
  cancel: ['v', 'type', 'id', 'searchId', 'ticketId'],
  heartbeat: ['v', 'type', 'id'],
};

/**
 * Parse and validate one text frame from a client. Unknown fields, wrong types and bad criteria are refused
 * with a message naming the field.
 *
 * @internal
 */
export function parseClientFrame(text: string): ParsedClientFrame {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, code: ServiceErrorCode.InvalidFrame, message: 'The frame is not valid JSON.' };
  }
  if (!isRecord(value)) {
    return { ok: false, code: ServiceErrorCode.InvalidFrame, message: 'A frame must be a JSON object.' };
  }
  const id = isId(value.id) ? value.id : undefined;
  const problem = (code: ServiceErrorCode, message: string): FrameProblem =>
    id === undefined ? { ok: false, code, message } : { ok: false, code, message, id };
  if (value.v !== SERVICE_PROTOCOL_VERSION) {
    return problem(
      ServiceErrorCode.UnsupportedProtocol,
      `This server speaks protocol version ${SERVICE_PROTOCOL_VERSION}; the frame has v=${JSON.stringify(value.v)}. Upgrade the client.`,
    );
  }
  const type = value.type;
  if (typeof type !== 'string' || !(type in CLIENT_FIELDS)) {
    return problem(
      ServiceErrorCode.InvalidFrame,
      `Unknown frame type ${JSON.stringify(type)}; expected hello, join, cancel or heartbeat.`,
    );
  }
  const allowed = CLIENT_FIELDS[type as ClientFrame['type']];
  const extra = Object.keys(value).find((key) => !allowed.includes(key));
  if (extra !== undefined) {
    return problem(
      ServiceErrorCode.InvalidFrame,
      `Unknown field ${JSON.stringify(extra)} in a ${type} frame.`,
    );
  }
  if (id === undefined) {
    return problem(
      ServiceErrorCode.InvalidFrame,
      `Field "id" must be a non-empty string of at most ${MAX_ID_LENGTH} characters.`,
    );
  }
  switch (type) {
    case 'hello': {
      if (
        typeof value.token !== 'string' ||
        value.token.length === 0 ||
        value.token.length > MAX_TOKEN_LENGTH
      ) {
        return problem(
          ServiceErrorCode.InvalidFrame,
          'Field "token" must be the Supabase access token (a JWT).',
        );
      }
      return { ok: true, frame: { v: SERVICE_PROTOCOL_VERSION, type, id, token: value.token } };
    }
    case 'join': {
      if (!isId(value.searchId)) {
        return problem(
          ServiceErrorCode.InvalidFrame,
          `Field "searchId" must be a non-empty string of at most ${MAX_ID_LENGTH} characters.`,
        );
      }
      if (value.resume !== undefined && !isTicketId(value.resume)) {
        return problem(
          ServiceErrorCode.InvalidFrame,
          'Field "resume" must be a ticket id received in a queued frame.',
        );
      }
      let criteria: SearchCriteria;
      try {
        criteria = validateCriteria(value.criteria);
      } catch (error) {
        return problem(ServiceErrorCode.InvalidFrame, (error as Error).message);
      }
      const frame: JoinFrame =
        value.resume === undefined
          ? { v: SERVICE_PROTOCOL_VERSION, type, id, searchId: value.searchId, criteria }
          : {
              v: SERVICE_PROTOCOL_VERSION,
              type,
              id,
              searchId: value.searchId,
              criteria,
              resume: value.resume,
            };
      return { ok: true, frame };
    }
    case 'cancel': {
      if (!isId(value.searchId)) {
        return problem(
          ServiceErrorCode.InvalidFrame,
          `Field "searchId" must be a non-empty string of at most ${MAX_ID_LENGTH} characters.`,
        );
      }
      if (value.ticketId !== undefined && !isTicketId(value.ticketId)) {
        return problem(
          ServiceErrorCode.InvalidFrame,
          'Field "ticketId" must be a ticket id received in a queued frame.',
        );
      }
      const frame: CancelFrame =
        value.ticketId === undefined
          ? { v: SERVICE_PROTOCOL_VERSION, type, id, searchId: value.searchId }
          : { v: SERVICE_PROTOCOL_VERSION, type, id, searchId: value.searchId, ticketId: value.ticketId };
      return { ok: true, frame };
    }
    default:
      return { ok: true, frame: { v: SERVICE_PROTOCOL_VERSION, type: 'heartbeat', id } };
  }
}

function isWireMatch(value: unknown): value is WireMatch {
  if (!isRecord(value)) return false;
  const users = value.userIds;
  return (
    typeof value.matchId === 'string' &&
    Array.isArray(users) &&
    users.length === 2 &&
    typeof users[0] === 'string' &&
    typeof users[1] === 'string' &&
    typeof value.createdAt === 'string' &&
    isRecord(value.criteria)
  );
}

/**
 * Parse one text frame from a server; `undefined` when it is not a frame this client understands.
 *
 * @internal
 */
export function parseServerFrame(text: string): ServerFrame | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(value) || value.v !== SERVICE_PROTOCOL_VERSION) return undefined;
  const optionalId = value.id === undefined || typeof value.id === 'string';
  switch (value.type) {
    case 'welcome':
      return typeof value.id === 'string' &&
        typeof value.userId === 'string' &&
        typeof value.nodeId === 'string' &&
        typeof value.heartbeatIntervalMs === 'number'
        ? (value as unknown as WelcomeFrame)
        : undefined;
    case 'queued':
      return optionalId && typeof value.searchId === 'string' && typeof value.ticketId === 'string'
        ? (value as unknown as QueuedFrame)
        : undefined;
    case 'matched':
      return optionalId && typeof value.searchId === 'string' && isWireMatch(value.match)
        ? (value as unknown as MatchedFrame)
        : undefined;
    case 'cancelled':
      return optionalId &&
        typeof value.searchId === 'string' &&
        (value.status === 'cancelled' || value.status === 'not_searching') &&
        typeof value.reason === 'string' &&
        END_REASONS.has(value.reason)
        ? (value as unknown as CancelledFrame)
        : undefined;
    case 'heartbeat':
      return typeof value.id === 'string' ? (value as unknown as HeartbeatAckFrame) : undefined;
    case 'error':
      return optionalId && typeof value.code === 'string' && typeof value.message === 'string'
        ? (value as unknown as ErrorFrame)
        : undefined;
    default:
      return undefined;
  }
}
