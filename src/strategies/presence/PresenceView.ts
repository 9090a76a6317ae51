import type { SearchCriteria } from '../../core/types';
import { criteriaPoolKey } from '../../core/validation';
import { decodePresencePayload } from './presenceProtocol';

/** One searcher as every client sees it in the channel's presence. */
export interface PresenceMember {
  readonly userId: string;
  /** Place in the pairing order (see `PresencePayload.rank_us`). */
  readonly rank: number;
  /** Canonical criteria key; only members of one pool are paired. */
  readonly pool: string;
  readonly criteria: SearchCriteria;
}

/** A member's place in the pairing: its partner, and whether it is the one that claims. */
export interface PresencePair {
  readonly partner: PresenceMember;
  /** True when the member comes first in the pairing order (it calls the claim). */
  readonly claimer: boolean;
}

/** The pairing of one pool. */
export interface PoolPairing {
  readonly pairs: ReadonlyMap<string, PresencePair>;
  /** Members without a partner, in pairing order. */
  readonly unpaired: readonly PresenceMember[];
}

interface MemberEntry {
  member: PresenceMember;
  /** presence_ref -> decoded payload, one per tracked meta (several tabs of one user). */
  readonly metas: Map<string, PresenceMember>;
}

/** (rank, userId) order: the pairing rule's total order. */
export function compareMembers(a: PresenceMember, b: PresenceMember): number {
  if (a.rank !== b.rank) return a.rank < b.rank ? -1 : 1;
  return a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0;
}

const EMPTY: ReadonlySet<string> = new Set();

function pairKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

/**
 * The searchers of one presence channel and the deterministic pairing rule every client computes from them,
 * from the presence state alone (no history), so a client that joined a second ago computes what one that has
 * been there for minutes computes.
 *
 * @remarks
 * The rule, per pool (equal criteria): sort the searchers by (rank, user id) and pair them 1-2, 3-4, ...; the
 * first of each pair claims it. A pair the database refused (ineligible) is skipped: each searcher pairs with
 * the oldest earlier unpaired searcher it is not ineligible with.
 *
 * What keeps pairs stable: arrivals take a rank after everyone present (they are appended, never inserted),
 * and when a searcher leaves, its pair-mate steps aside at once (see the engine), so the two removals cancel out
 * and the pairs behind them do not shift.
 *
 * Several metas with one user id (tabs) count once, with the lowest rank; malformed metas are ignored.
 *
 * @internal
 */
export class PresenceView {
  readonly #byRef = new Map<string, string>();
  readonly #users = new Map<string, MemberEntry>();
  readonly #pools = new Map<string, PresenceMember[]>();
  readonly #ineligible = new Set<string>();
  #version = 0;
  readonly #memo = new Map<string, { version: number; skip: string; pairing: PoolPairing }>();

  /** Number of distinct searchers. */
  get size(): number {
    return this.#users.size;
  }

  /** Number of tracked metas (channel members that tracked, i.e. recipients of every diff). */
  get metaCount(): number {
    return this.#byRef.size;
  }

  /** The member with this user id. */
  member(userId: string): PresenceMember | undefined {
    return this.#users.get(userId)?.member;
  }

  /** The user a tracked meta belongs to. */
  userOf(ref: string): string | undefined {
    return this.#byRef.get(ref);
  }

  /** Whether `ref` is its user's only meta (removing it removes the user). */
  isLastMeta(ref: string): boolean {
    const userId = this.#byRef.get(ref);
    return userId !== undefined && this.#users.get(userId)?.metas.size === 1;
  }

  /** The largest rank of any meta (0 when empty): an arriving searcher ranks just after it. */
  maxRank(): number {
    let max = 0;
    for (const entry of this.#users.values())
      for (const meta of entry.metas.values()) max = Math.max(max, meta.rank);
    return max;
  }

  /** Every searcher of a pool, in pairing order. */
  pool(pool: string): readonly PresenceMember[] {
    return this.#pools.get(pool) ?? [];
  }

  /** Add one tracked meta. Returns the user id when it is a searcher's payload. */
  add(ref: string, meta: Readonly<Record<string, unknown>>): string | undefined {
    const payload = decodePresencePayload(meta);
    if (!payload) return undefined;
    this.remove(ref);
    const member: PresenceMember = {
      userId: payload.user_id,
      rank: payload.rank_us,
      pool: criteriaPoolKey(payload.criteria),
      criteria: payload.criteria,
    };
    this.#version += 1;
    this.#byRef.set(ref, member.userId);
    const entry = this.#users.get(member.userId);
    if (entry) {
      entry.metas.set(ref, member);
      this.#refresh(entry);
    } else {
      this.#users.set(member.userId, { member, metas: new Map([[ref, member]]) });
      this.#insert(member);
    }
    return member.userId;
  }

  /**
   * Remove one tracked meta. Returns the user id and whether that user is now gone entirely (its last meta
   * left), or undefined when the meta was unknown.
   */
  remove(ref: string): { readonly userId: string; readonly gone: boolean } | undefined {
    const userId = this.#byRef.get(ref);
    if (userId === undefined) return undefined;
    this.#version += 1;
    this.#byRef.delete(ref);
    const entry = this.#users.get(userId);
    if (!entry) return { userId, gone: true };
    entry.metas.delete(ref);
    if (entry.metas.size > 0) {
      this.#refresh(entry);
      return { userId, gone: false };
    }
    this.#users.delete(userId);
    this.#delete(entry.member);
    for (const key of [...this.#ineligible]) {
      if (key.startsWith(`${userId}|`) || key.endsWith(`|${userId}`)) this.#ineligible.delete(key);
    }
    return { userId, gone: true };
  }

  /** Record that `a` and `b` may not be paired (the database refused them); kept while both are present. */
  markIneligible(a: string, b: string): void {
    if (!this.#users.has(a) || !this.#users.has(b)) return;
    this.#ineligible.add(pairKey(a, b));
    this.#version += 1;
  }

  /** Whether `a` and `b` are known to be ineligible. */
  isIneligible(a: string, b: string): boolean {
    return this.#ineligible.has(pairKey(a, b));
  }

  /** The pair `userId` belongs to (members in `skip` left out), or undefined when absent or unpaired. */
  pairOf(userId: string, skip: ReadonlySet<string> = EMPTY): PresencePair | undefined {
    const member = this.#users.get(userId)?.member;
    if (!member || skip.has(userId)) return undefined;
    return this.pairing(member.pool, skip).pairs.get(userId);
  }

  /** The rule applied to one pool (members in `skip` left out). Memoised per view version. */
  pairing(pool: string, skip: ReadonlySet<string> = EMPTY): PoolPairing {
    const skipKey = skip.size === 0 ? '' : [...skip].sort().join(',');
    const memo = this.#memo.get(pool);
    if (memo && memo.version === this.#version && memo.skip === skipKey) return memo.pairing;
    const pairs = new Map<string, PresencePair>();
    const open: PresenceMember[] = [];
    for (const member of this.#pools.get(pool) ?? []) {
      if (skip.has(member.userId)) continue;
      const at =
        this.#ineligible.size === 0
          ? open.length - 1
          : open.findIndex((earlier) => !this.isIneligible(earlier.userId, member.userId));
      if (at < 0) {
        open.push(member);
        continue;
      }
      const earlier = open[at] as PresenceMember;
      open.splice(at, 1);
      pairs.set(earlier.userId, { partner: member, claimer: true });
      pairs.set(member.userId, { partner: earlier, claimer: false });
    }
    const pairing: PoolPairing = { pairs, unpaired: open };
    this.#memo.set(pool, { version: this.#version, skip: skipKey, pairing });
    return pairing;
  }

  /** Keeps an entry's member at the lowest-ranked of its metas (tabs; forged metas must not reorder). */
  #refresh(entry: MemberEntry): void {
    let best: PresenceMember | undefined;
    for (const meta of entry.metas.values()) {
      if (!best || compareMembers(meta, best) < 0) best = meta;
    }
    if (!best || best === entry.member) return;
    this.#delete(entry.member);
    entry.member = best;
    this.#insert(best);
  }

  #insert(member: PresenceMember): void {
    let list = this.#pools.get(member.pool);
    if (!list) {
      list = [];
      this.#pools.set(member.pool, list);
    }
    list.splice(this.#indexOf(list, member), 0, member);
  }

  #delete(member: PresenceMember): void {
    const list = this.#pools.get(member.pool);
    if (!list) return;
    const index = this.#indexOf(list, member);
    if (index < list.length && list[index]?.userId === member.userId) list.splice(index, 1);
    if (list.length === 0) {
      this.#pools.delete(member.pool);
      this.#memo.delete(member.pool);
    }
  }

  #indexOf(list: readonly PresenceMember[], member: PresenceMember): number {
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareMembers(list[mid] as PresenceMember, member) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
