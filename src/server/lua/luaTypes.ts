/**
 * Types of the compiled Lua scripts (see `scripts/generate-lua.ts`) and the error codes they return.
 *
 * @packageDocumentation
 */

/** One compiled Lua script: its text with includes inlined, and what EVALSHA needs. */
export interface LuaScript {
  /** The operation, from the file name (`enqueueTicket` for `enqueueTicket-7.lua`). */
  readonly name: string;
  /** How many of the arguments are keys (the number in the file name). */
  readonly numberOfKeys: number;
  /** SHA-1 of {@link LuaScript.lua}, for EVALSHA. */
  readonly sha1: string;
  /** The script text. */
  readonly lua: string;
}

/**
 * Error returns of the scripts: negative integers, so they cannot be mistaken for a result.
 *
 * @remarks Keep in sync with the headers of `src/server/lua/*.lua`.
 */
export const LuaErrorCode = {
  /** The ticket does not exist (never created, or its retention ran out). */
  TicketNotFound: -1,
  /** The ticket belongs to another user. */
  NotOwner: -2,
  /** The user's join limit (shared by every node) is used up. */
  RateLimited: -3,
} as const;

/** Union of {@link LuaErrorCode} values. */
export type LuaErrorCode = (typeof LuaErrorCode)[keyof typeof LuaErrorCode];

/** The name of a {@link LuaErrorCode} value, for messages and logs. */
export function luaErrorName(code: number): string {
  for (const [name, value] of Object.entries(LuaErrorCode)) if (value === code) return name;
  return `LuaError(${code})`;
}
