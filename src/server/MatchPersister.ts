import type { Logger, Timers } from '../core/environment';
import { criteriaPoolKey } from '../core/validation';
import type { KeySpace } from './keys';
import { luaScripts } from './lua/scripts.generated';
import { parseStoredMatch, type RedisClient, type StoredMatch } from './RedisQueue';

/**
 * The slice of a `pg` `Pool` (or any driver) the persister needs.
 *
 * @remarks Structural, so the server is not tied to one `pg` version and tests can hand in a fake.
 */
export interface PgPoolLike {
  query(text: string, params?: unknown[]): Promise<{ readonly rowCount: number | null }>;
}

/** Options of {@link MatchPersister}. */
export interface MatchPersisterOptions {
  readonly redis: RedisClient;
  readonly keys: KeySpace;
  readonly pool: PgPoolLike;
  /** This node; the consumer name in the group. */
  readonly consumer: string;
  readonly logger: Logger;
  readonly timers: Timers;
  /** Table to insert into (schema-qualified). @defaultValue `'matchmaker.matches'` */
  readonly table?: string;
  /** Consumer group name. @defaultValue `'matchmaker-persister'` */
  readonly group?: string;
  /** Most matches per INSERT. @defaultValue 200 */
  readonly batchSize?: number;
  /** Pause between polls when idle, in ms. @defaultValue 250 */
  readonly pollIntervalMs?: number;
  /** Entries another consumer (a dead node) left unacknowledged this long are taken over. @defaultValue 30000 */
  readonly claimIdleMs?: number;
  /** Longest pause between retries while Postgres fails, in ms. @defaultValue 5000 */
  readonly maxRetryDelayMs?: number;
  /** Called after matches were written (for metrics). */
  readonly onPersisted?: (count: number) => void;
  /** Called after a failed attempt (for metrics). */
  readonly onFailure?: (error: unknown) => void;
}

interface Entry {
  readonly bucket: number;
  readonly id: string;
  /** Undefined when the entry's payload is unreadable (it is dead-lettered). */
  readonly match: StoredMatch | undefined;
  readonly raw: string | undefined;
}

type StreamReply = [string, [string, string[] | null][]][] | null;

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/;

/** A ticket id `<bucket>.<32 hex>` as the UUID its hex part is. */
export function ticketUuid(ticketId: string): string {
  const hex = ticketId.slice(ticketId.indexOf('.') + 1);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** True for errors caused by the data itself (SQLSTATE classes 22 and 23): retrying cannot help. */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23'));
}

function fieldsToRaw(fields: string[] | null): string | undefined {
  if (!fields) return undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === 'match') return fields[i + 1];
  return undefined;
}

/**
 * Writes every match to Postgres, reading the per-bucket Redis Streams the pairing scripts append to, through
 * one consumer group shared by all nodes.
 *
 * @remarks
 * - Batched: up to `batchSize` matches per `INSERT ... ON CONFLICT (id) DO NOTHING`, so redelivery is harmless
 *   (idempotent by match id).
 * - An entry is acknowledged (and deleted from the stream) only after its row is committed. While Postgres is
 *   down, entries stay pending and are retried with backoff: persistence is delayed, nothing is lost.
 * - Entries left pending by a dead node are claimed (XAUTOCLAIM) after `claimIdleMs`.
 * - A match Postgres refuses for its data (e.g. a user id that is not a UUID) is moved to `<bucket>m:dead`
 *   and logged, so it cannot block the others.
 */
export class MatchPersister {
  readonly #o: Required<Omit<MatchPersisterOptions, 'onPersisted' | 'onFailure'>> &
    Pick<MatchPersisterOptions, 'onPersisted' | 'onFailure'>;
  readonly #groupsReady = new Set<number>();
  /** Buckets with entries delivered to this consumer and not yet acknowledged. */
  readonly #pending = new Set<number>();
  #running: Promise<void> | undefined;
  #stopping = false;
  #sleepTimer: unknown;
  #wake: (() => void) | undefined;
  #failures = 0;
  #lastClaimAt = 0;
  #nudged = false;

  constructor(options: MatchPersisterOptions) {
    const table = options.table ?? 'matchmaker.matches';
    if (!IDENTIFIER.test(table))
      throw new Error(`persistence.table must be an identifier like matchmaker.matches, got ${table}`);
    this.#o = {
      table,
      group: 'matchmaker-persister',
      batchSize: 200,
      pollIntervalMs: 250,
      claimIdleMs: 30_000,
      maxRetryDelayMs: 5_000,
      ...options,
    };
    // Pending entries of this consumer from an earlier life are re-read on the first pass.
    for (let bucket = 0; bucket < options.keys.shards; bucket += 1) this.#pending.add(bucket);
  }

  /** Start the background loop. */
  start(): void {
    if (this.#running) return;
    this.#stopping = false;
    this.#running = this.#loop();
  }

  /** Poll soon (a match was just made). */
  nudge(): void {
    this.#nudged = true;
    this.#wake?.();
  }

  /**
   * Stop the loop. With `drainTimeoutMs`, first keep writing until the streams hold nothing for this consumer
   * or the time is up.
   */
  async stop(drainTimeoutMs = 0): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    await this.#running;
    this.#running = undefined;
    const deadline = Date.now() + drainTimeoutMs;
    while (Date.now() < deadline) {
      const written = await this.runOnce().catch(() => -1);
      if (written <= 0) break;
    }
  }

  async #loop(): Promise<void> {
    while (!this.#stopping) {
      let written = 0;
      try {
        written = await this.runOnce();
        this.#failures = 0;
      } catch (error) {
        this.#failures += 1;
        this.#o.onFailure?.(error);
        this.#o.logger.warn('persisting matches failed; will retry', { error, attempt: this.#failures });
      }
      if (this.#stopping) break;
      const delay =
        this.#failures > 0
          ? Math.min(this.#o.maxRetryDelayMs, 100 * 2 ** Math.min(this.#failures, 10))
          : written >= this.#o.batchSize || this.#nudged
            ? 0
            : this.#o.pollIntervalMs;
      this.#nudged = false;
      await this.#sleep(delay);
    }
  }

  #sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.#o.timers.clearTimeout(this.#sleepTimer);
        this.#sleepTimer = undefined;
        this.#wake = undefined;
        resolve();
      };
      this.#wake = done;
      this.#sleepTimer = this.#o.timers.setTimeout(done, ms);
    });
  }

  async #ensureGroup(bucket: number): Promise<void> {
    if (this.#groupsReady.has(bucket)) return;
    try {
      await this.#o.redis.xgroup('CREATE', this.#o.keys.matchStream(bucket), this.#o.group, '0', 'MKSTREAM');
    } catch (error) {
      if (!(error instanceof Error && error.message.startsWith('BUSYGROUP'))) throw error;
    }
    this.#groupsReady.add(bucket);
  }

  #toEntries(bucket: number, reply: StreamReply): Entry[] {
    const out: Entry[] = [];
    for (const [, messages] of reply ?? []) {
      for (const [id, fields] of messages) out.push(this.#entry(bucket, id, fields));
    }
    return out;
  }

  #entry(bucket: number, id: string, fields: string[] | null): Entry {
    const raw = fieldsToRaw(fields);
    let match: StoredMatch | undefined;
    try {
      match = raw === undefined ? undefined : parseStoredMatch(raw);
    } catch {
      match = undefined;
    }
    return { bucket, id, match, raw };
  }

  async #read(bucket: number, budget: number): Promise<Entry[]> {
    const { redis, keys, group, consumer } = this.#o;
    const key = keys.matchStream(bucket);
    let reply: StreamReply;
    try {
      await this.#ensureGroup(bucket);
      if (this.#pending.has(bucket)) {
        reply = (await redis.xreadgroup(
          'GROUP',
          group,
          consumer,
          'COUNT',
          budget,
          'STREAMS',
          key,
          '0',
        )) as StreamReply;
        const entries = this.#toEntries(bucket, reply);
        if (entries.length > 0) return entries;
        this.#pending.delete(bucket);
      }
      reply = (await redis.xreadgroup(
        'GROUP',
        group,
        consumer,
        'COUNT',
        budget,
        'STREAMS',
        key,
        '>',
      )) as StreamReply;
    } catch (error) {
      if (error instanceof Error && error.message.startsWith('NOGROUP')) {
        // The stream was deleted (e.g. a Redis restart without persistence): recreate the group next time.
        this.#groupsReady.delete(bucket);
        return [];
      }
      throw error;
    }
    const entries = this.#toEntries(bucket, reply);
    if (entries.length > 0) this.#pending.add(bucket);
    return entries;
  }

  async #claimAbandoned(bucket: number, budget: number): Promise<Entry[]> {
    const { redis, keys, group, consumer, claimIdleMs } = this.#o;
    const reply = (await redis.xautoclaim(
      keys.matchStream(bucket),
      group,
      consumer,
      claimIdleMs,
      '0-0',
      'COUNT',
      budget,
    )) as [string, [string, string[] | null][], string[]?];
    const entries = (reply[1] ?? []).map(([id, fields]) => this.#entry(bucket, id, fields));
    if (entries.length > 0) this.#pending.add(bucket);
    return entries;
  }

  /**
   * One pass: read up to `batchSize` matches across the buckets (own pending first, then new, then abandoned),
   * write them, acknowledge them. Resolves with the number written; throws when Postgres refused the batch
   * (the entries stay pending).
   */
  async runOnce(): Promise<number> {
    const { keys, batchSize, claimIdleMs } = this.#o;
    const entries: Entry[] = [];
    const claimNow = Date.now() - this.#lastClaimAt >= Math.max(50, claimIdleMs / 2);
    if (claimNow) this.#lastClaimAt = Date.now();
    const reads: Promise<Entry[]>[] = [];
    const perBucket = Math.max(1, Math.ceil(batchSize / 4));
    for (let bucket = 0; bucket < keys.shards; bucket += 1) {
      reads.push(
        (async () => {
          const mine = await this.#read(bucket, perBucket);
          if (mine.length >= perBucket || !claimNow || !this.#groupsReady.has(bucket)) return mine;
          return [...mine, ...(await this.#claimAbandoned(bucket, perBucket - mine.length))];
        })(),
      );
    }
    for (const batch of await Promise.all(reads)) entries.push(...batch);
    if (entries.length === 0) return 0;

    const good = entries.filter((entry) => entry.match !== undefined);
    const unreadable = entries.filter((entry) => entry.match === undefined);
    const dead: Entry[] = [...unreadable.filter((entry) => entry.raw !== undefined)];
    if (good.length > 0) {
      try {
        await this.#insert(good.map((entry) => entry.match!));
      } catch (error) {
        if (!isDataError(error)) throw error;
        // One bad row must not block the rest: write them one by one and set the refused ones aside.
        for (const entry of good) {
          try {
            await this.#insert([entry.match!]);
          } catch (rowError) {
            if (!isDataError(rowError)) throw rowError;
            this.#o.logger.error('match refused by Postgres; moved to the dead-letter stream', {
              matchId: entry.match!.matchId,
              error: rowError,
            });
            dead.push(entry);
          }
        }
      }
    }
    for (const entry of dead) {
      await this.#o.redis.xadd(`${keys.matchStream(entry.bucket)}:dead`, '*', 'match', entry.raw!);
    }
    await this.#ack(entries);
    const written = good.length - dead.filter((entry) => entry.match !== undefined).length;
    if (written > 0) this.#o.onPersisted?.(written);
    return written;
  }

  async #insert(matches: readonly StoredMatch[]): Promise<void> {
    const params: unknown[] = [];
    const rows: string[] = [];
    for (const match of matches) {
      const n = params.length;
      params.push(
        match.matchId,
        match.userIds[0],
        match.userIds[1],
        ticketUuid(match.ticketIds[0]),
        ticketUuid(match.ticketIds[1]),
        criteriaPoolKey(match.criteria),
        JSON.stringify(match.criteria),
        new Date(match.createdAtMs).toISOString(),
      );
      rows.push(
        `($${n + 1}, $${n + 2}, $${n + 3}, $${n + 4}, $${n + 5}, $${n + 6}, $${n + 7}::jsonb, $${n + 8})`,
      );
    }
    await this.#o.pool.query(
      `insert into ${this.#o.table} (id, user_a, user_b, ticket_a, ticket_b, pool, criteria, created_at) values ${rows.join(', ')} on conflict (id) do nothing`,
      params,
    );
  }

  async #ack(entries: readonly Entry[]): Promise<void> {
    const byBucket = new Map<number, string[]>();
    for (const entry of entries)
      byBucket.set(entry.bucket, [...(byBucket.get(entry.bucket) ?? []), entry.id]);
    const script = luaScripts.ackMatches;
    await Promise.all(
      [...byBucket].map(async ([bucket, ids]) => {
        const key = this.#o.keys.matchStream(bucket);
        const args = [this.#o.group, ...ids];
        try {
          await this.#o.redis.evalsha(script.sha1, 1, key, ...args);
        } catch (error) {
          if (!(error instanceof Error && error.message.startsWith('NOSCRIPT'))) throw error;
          await this.#o.redis.eval(script.lua, 1, key, ...args);
        }
      }),
    );
  }
}
