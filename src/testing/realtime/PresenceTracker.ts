/**
 * Presence state per room, with the semantics of Phoenix's tracker as Realtime uses it: one tracked meta
 * per channel (its owner) under the channel's presence key; every meta carries a `phx_ref` (12 random bytes
 * as URL-safe base64, 16 characters); re-tracking with a different payload is an update (one diff with the
 * new meta, carrying `phx_ref_prev`, in `joins` and the old meta in `leaves`).
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';

/** One tracked meta: the client's payload plus `phx_ref` (and `phx_ref_prev` after an update). */
export type PresenceMeta = Readonly<Record<string, unknown>> & { readonly phx_ref: string };

/** `{ key: { metas: [...] } }`, the shape of `presence_state` and of each side of a diff. */
export type PresenceEntries = Record<string, { metas: PresenceMeta[] }>;

/** A `presence_diff` payload. Both keys are always present. */
export interface PresenceDiff {
  readonly joins: PresenceEntries;
  readonly leaves: PresenceEntries;
}

interface Tracked {
  readonly key: string;
  readonly meta: PresenceMeta;
}

/** A fresh `phx_ref`. */
export function presenceRef(): string {
  return randomBytes(12).toString('base64url');
}

/** Presence of every room, keyed by an owner (one channel) per tracked meta. */
export class PresenceTracker<Owner> {
  readonly #rooms = new Map<string, Map<Owner, Tracked>>();

  /** The current state of a room, grouped by key in tracking order. */
  list(room: string): PresenceEntries {
    const state: PresenceEntries = {};
    for (const { key, meta } of this.#rooms.get(room)?.values() ?? []) {
      const entry = state[key];
      if (entry) entry.metas.push(meta);
      else state[key] = { metas: [meta] };
    }
    return state;
  }

  /** Whether `owner` has a meta tracked in `room`. */
  has(room: string, owner: Owner): boolean {
    return this.#rooms.get(room)?.has(owner) ?? false;
  }

  /**
   * Track `payload` for `owner` under `key`, or update it when already tracked.
   * The caller skips identical re-tracks before calling (they produce no diff).
   */
  track(room: string, owner: Owner, key: string, payload: Readonly<Record<string, unknown>>): PresenceDiff {
    let members = this.#rooms.get(room);
    if (!members) {
      members = new Map();
      this.#rooms.set(room, members);
    }
    const previous = members.get(owner);
    const { phx_ref: _ignoredRef, ...rest } = payload;
    if (!previous) {
      const meta: PresenceMeta = { ...rest, phx_ref: presenceRef() };
      members.set(owner, { key, meta });
      return { joins: { [key]: { metas: [meta] } }, leaves: {} };
    }
    const { phx_ref_prev: _ignoredPrev, ...fresh } = rest;
    const meta: PresenceMeta = { ...fresh, phx_ref: presenceRef(), phx_ref_prev: previous.meta.phx_ref };
    members.set(owner, { key: previous.key, meta });
    return {
      joins: { [previous.key]: { metas: [meta] } },
      leaves: { [previous.key]: { metas: [previous.meta] } },
    };
  }

  /** Remove `owner`'s meta; the leave diff, or undefined when nothing was tracked. */
  untrack(room: string, owner: Owner): PresenceDiff | undefined {
    const members = this.#rooms.get(room);
    const previous = members?.get(owner);
    if (!members || !previous) return undefined;
    members.delete(owner);
    if (members.size === 0) this.#rooms.delete(room);
    return { joins: {}, leaves: { [previous.key]: { metas: [previous.meta] } } };
  }
}
