/**
 * Load generator of `bench/service.bench.ts`: simulated users that search through the service tier, either as
 * raw `ws` sockets speaking the documented protocol (`docs/service-protocol.md`; light, so that the generator
 * costs the machine little) or through the SDK (`Matchmaker` + `ServiceStrategy`), driven at a fixed join rate.
 *
 * Joins are sent in pairs of one pool (`criteria: { pool }`), pools taken round-robin, so that a partner is
 * already on its way and the latency measures the system, not the wait for someone to arrive. The latency of a
 * match runs from the earlier of its two join calls to the moment the second of its two users holds it.
 *
 * @packageDocumentation
 */
import { WebSocket } from 'ws';
import { Matchmaker } from '../../src/index';
import { ServiceStrategy } from '../../src/strategies/service/ServiceStrategy';
import { createHistogram, type LatencyHistogram } from './histogram';
import { openAuthenticatedSocket } from './serviceHello';
import { newBenchUserId, signBenchToken } from './serviceTokens';

/** Where a client reports what happened to its search. */
export interface LoadSink {
  /** The client's current search was matched (`matchId` is the same for both users). */
  matched(client: LoadClient, matchId: string): void;
  /** The client's current search failed or ended without a match. */
  failed(client: LoadClient, code: string): void;
}

/** One simulated user with an open connection. */
export interface LoadClient {
  /** Where outcomes go (set by {@link runFixedRate}). */
  sink: LoadSink | undefined;
  /** Start a search in `pool`; ends with `sink.matched` or `sink.failed`. */
  join(pool: string): void;
  /** Withdraw the current search (stragglers after a run). */
  cancel(): void;
  close(): Promise<void>;
}

/** A set of connected clients, with a count of every frame they received. */
export interface LoadClients {
  readonly clients: readonly LoadClient[];
  /** Frames received by all clients so far. */
  readonly delivered: () => number;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------------
// Raw protocol clients

class RawClient implements LoadClient {
  sink: LoadSink | undefined;
  readonly #socket: WebSocket;
  readonly #index: number;
  #seq = 0;
  #searchId: string | undefined;
  #joinId: string | undefined;
  #lastSentAt = performance.now();

  constructor(socket: WebSocket, index: number, counter: { n: number }) {
    this.#socket = socket;
    this.#index = index;
    socket.on('message', (data) => {
      counter.n += 1;
      this.#onFrame(String(data));
    });
    socket.on('error', () => {});
  }

  #send(text: string): void {
    this.#lastSentAt = performance.now();
    if (this.#socket.readyState === WebSocket.OPEN) this.#socket.send(text);
  }

  join(pool: string): void {
    this.#seq += 1;
    this.#searchId = `s${this.#index}.${this.#seq}`;
    this.#joinId = `j${this.#seq}`;
    this.#send(
      `{"v":1,"type":"join","id":"${this.#joinId}","searchId":"${this.#searchId}","criteria":{"pool":"${pool}"}}`,
    );
  }

  cancel(): void {
    if (this.#searchId === undefined) return;
    this.#send(`{"v":1,"type":"cancel","id":"c${this.#seq}","searchId":"${this.#searchId}"}`);
  }

  /** Heartbeat when nothing was sent for `idleMs` (the node closes connections silent for ~60 s). */
  keepAlive(now: number, idleMs: number): void {
    if (now - this.#lastSentAt >= idleMs) this.#send(`{"v":1,"type":"heartbeat","id":"b${this.#seq}"}`);
  }

  #onFrame(text: string): void {
    const current = this.#searchId;
    if (current === undefined) return;
    // The fields are read from the node's JSON text rather than through JSON.parse (the generator shares the
    // machine's 2 cores with what it measures). Every value read here is a plain string without escapes (ids
    // and search ids of this generator, UUID match ids); the first "type" is the frame's own.
    const type = stringField(text, 'type');
    if (type === 'matched') {
      const matchId = stringField(text, 'matchId');
      if (stringField(text, 'searchId') === current && matchId !== undefined) {
        this.#end();
        this.sink?.matched(this, matchId);
      }
    } else if (type === 'cancelled') {
      if (stringField(text, 'searchId') === current) {
        this.#end();
        this.sink?.failed(this, 'cancelled');
      }
    } else if (type === 'error') {
      const id = stringField(text, 'id');
      if (id !== undefined && id === this.#joinId) {
        this.#end();
        this.sink?.failed(this, stringField(text, 'code') ?? 'error');
      }
    }
  }

  #end(): void {
    this.#searchId = undefined;
    this.#joinId = undefined;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.#socket.readyState === WebSocket.CLOSED) return resolve();
      this.#socket.once('close', () => resolve());
      this.#socket.terminate();
    });
  }
}

/** The first `"name":"<value>"` of a JSON text (a value without escapes), or undefined. */
export function stringField(text: string, name: string): string | undefined {
  const key = `"${name}":"`;
  const at = text.indexOf(key);
  if (at < 0) return undefined;
  const from = at + key.length;
  const to = text.indexOf('"', from);
  return to < 0 ? undefined : text.slice(from, to);
}

async function openMany<T>(
  count: number,
  concurrency: number,
  open: (i: number) => Promise<T>,
): Promise<T[]> {
  const opened: T[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      opened[i] = await open(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return opened;
}

/**
 * `count` authenticated raw protocol clients, each a user of its own, spread round-robin over `urls` (one URL per
 * node). They heartbeat while idle so that the nodes keep them.
 */
export async function connectRawClients(urls: readonly string[], count: number): Promise<LoadClients> {
  const counter = { n: 0 };
  const clients: RawClient[] = [];
  try {
    const opened = await openMany(count, 100, async (i) => {
      const socket = await openAuthenticatedSocket(urls[i % urls.length]!, signBenchToken(newBenchUserId()), {
        timeoutMs: 30_000,
      });
      const client = new RawClient(socket, i, counter);
      clients.push(client);
      return client;
    });
    const keepAlive = setInterval(() => {
      const now = performance.now();
      for (const client of opened) client.keepAlive(now, 15_000);
    }, 5_000);
    return {
      clients: opened,
      delivered: () => counter.n,
      async close() {
        clearInterval(keepAlive);
        await Promise.all(opened.map((client) => client.close()));
      },
    };
  } catch (error) {
    await Promise.all(clients.map((client) => client.close()));
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// SDK clients (Matchmaker + ServiceStrategy)

class SdkClient implements LoadClient {
  sink: LoadSink | undefined;
  readonly #matchmaker: Matchmaker;
  #searching = false;

  constructor(matchmaker: Matchmaker) {
    this.#matchmaker = matchmaker;
    matchmaker.on('matched', ({ match }) => {
      if (!this.#searching) return;
      this.#searching = false;
      this.sink?.matched(this, match.matchId);
    });
    matchmaker.on('cancelled', ({ reason }) => {
      if (!this.#searching) return;
      this.#searching = false;
      this.sink?.failed(this, `cancelled:${reason}`);
    });
  }

  join(pool: string): void {
    this.#searching = true;
    this.#matchmaker.start({ criteria: { pool } }).catch((error: unknown) => {
      if (!this.#searching) return;
      this.#searching = false;
      this.sink?.failed(this, error instanceof Error ? error.message : String(error));
    });
  }

  cancel(): void {
    void this.#matchmaker.cancel().catch(() => false);
  }

  close(): Promise<void> {
    return this.#matchmaker.close();
  }
}

/**
 * `count` users on the SDK path: one `Matchmaker` with a `ServiceStrategy` each, spread round-robin over `urls`.
 * Each is connected (the strategy connects on its first search) by one search that is cancelled at once.
 */
export async function connectSdkClients(urls: readonly string[], count: number): Promise<LoadClients> {
  const counter = { n: 0 };
  class CountingWebSocket extends WebSocket {
    constructor(url: string) {
      super(url, { perMessageDeflate: false });
      this.on('message', () => {
        counter.n += 1;
      });
    }
  }
  const clients: SdkClient[] = [];
  try {
    const opened = await openMany(count, 50, async (i) => {
      const token = signBenchToken(newBenchUserId());
      const matchmaker = new Matchmaker(
        new ServiceStrategy({
          url: urls[i % urls.length]!,
          getAccessToken: () => token,
          WebSocket: CountingWebSocket,
        }),
      );
      const client = new SdkClient(matchmaker);
      clients.push(client);
      // Connect and authenticate now, not during the measured run: a search in a pool of its own, cancelled.
      await matchmaker.start({ criteria: { pool: `warmup-${i}` } });
      await matchmaker.cancel();
      return client;
    });
    return {
      clients: opened,
      delivered: () => counter.n,
      async close() {
        await Promise.all(opened.map((client) => client.close()));
      },
    };
  } catch (error) {
    await Promise.all(clients.map((client) => client.close().catch(() => undefined)));
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Fixed-rate driver

/** Options of {@link runFixedRate}. */
export interface FixedRateOptions {
  /** Joins per second offered (sent in pairs). */
  readonly joinsPerSecond: number;
  /** Time at the rate before the measured window. */
  readonly warmupMs: number;
  /** The measured window. */
  readonly measureMs: number;
  /** Pools used round-robin, one per pair. */
  readonly pools: number;
  /** Longest wait for the searches still open after the window. */
  readonly drainMs: number;
  /** Prefix of pool names (keeps runs apart). */
  readonly poolPrefix: string;
  /** Period of the send loop. @defaultValue 2 */
  readonly tickMs?: number;
}

/** What one fixed-rate run measured (all over the measured window). */
export interface FixedRateResult {
  readonly targetJoinsPerSecond: number;
  /** Joins actually sent per second. */
  readonly joinsPerSecond: number;
  /** Matches that reached both users per second. */
  readonly matchesPerSecond: number;
  /** Join-to-both-notified latency of the matches completed in the window. */
  readonly latency: LatencyHistogram;
  /** Searches open (joined, not yet matched) at the start and end of the window, and at most. */
  readonly openAtStart: number;
  readonly openAtEnd: number;
  readonly openMax: number;
  /** Joins the generator could not send because every user was busy (the system fell behind). */
  readonly starved: number;
  /** Searches that failed (error frames, cancellations), by code. */
  readonly failures: Readonly<Record<string, number>>;
  /** Frames received by all clients per match. */
  readonly deliveriesPerMatch: number;
  /** CPU time of this process (the load generator) per match, in microseconds. */
  readonly generatorCpuUsPerMatch: number;
  /** Searches still open after the drain (then cancelled). */
  readonly stragglers: number;
  /** Whether the rate was sustained: see {@link judgeSustained}. */
  readonly sustained: boolean;
  /** Why not, when not. */
  readonly verdict: string;
}

/**
 * The rate was sustained when the generator sent what it meant to (at least 97%), matches/s tracked joins/2 (at
 * least 95% of it), no join failed or starved, and the open searches did not grow over the window by more than
 * 50 ms worth of joins (at least 20).
 */
export function judgeSustained(r: Omit<FixedRateResult, 'sustained' | 'verdict' | 'latency'>): string {
  const failures = Object.values(r.failures).reduce((a, b) => a + b, 0);
  if (r.starved > 0) return `starved ${r.starved} joins (all users busy)`;
  if (failures > 0) return `${failures} failed searches (${JSON.stringify(r.failures)})`;
  if (r.joinsPerSecond < 0.97 * r.targetJoinsPerSecond)
    return `generator sent only ${Math.round(r.joinsPerSecond)} joins/s`;
  if (r.matchesPerSecond < 0.95 * (r.targetJoinsPerSecond / 2))
    return `matches/s ${Math.round(r.matchesPerSecond)} < 95% of joins/2`;
  const growth = r.openAtEnd - r.openAtStart;
  if (growth > Math.max(20, r.targetJoinsPerSecond * 0.05)) return `open searches grew by ${growth}`;
  return 'sustained';
}

class FifoQueue<T> {
  #items: T[] = [];
  #head = 0;

  get size(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head++];
    if (this.#head > 1_024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

/**
 * Drive `clients` at a fixed join rate: after `warmupMs`, measure `measureMs`; then wait for open searches
 * (`drainMs` at most) and cancel the stragglers, so the next run starts from an empty queue.
 */
export async function runFixedRate(load: LoadClients, options: FixedRateOptions): Promise<FixedRateResult> {
  const rate = options.joinsPerSecond;
  const tickMs = options.tickMs ?? 2;
  const free = new FifoQueue<LoadClient>();
  const joinedAt = new Map<LoadClient, number>();
  const halfMatched = new Map<string, number>();
  const latency = createHistogram();
  const failures: Record<string, number> = {};
  let windowStart = Number.POSITIVE_INFINITY;
  let windowEnd = Number.POSITIVE_INFINITY;
  let matchesInWindow = 0;
  let openMax = 0;

  const sink: LoadSink = {
    matched(client, matchId) {
      const now = performance.now();
      const at = joinedAt.get(client);
      if (at === undefined) return;
      joinedAt.delete(client);
      free.push(client);
      const other = halfMatched.get(matchId);
      if (other === undefined) {
        halfMatched.set(matchId, at);
        return;
      }
      halfMatched.delete(matchId);
      if (now >= windowStart && now < windowEnd) {
        matchesInWindow += 1;
        latency.recordMs(now - Math.min(at, other));
      }
    },
    failed(client, code) {
      const now = performance.now();
      if (!joinedAt.delete(client)) return;
      free.push(client);
      if (now >= windowStart && now < windowEnd) failures[code] = (failures[code] ?? 0) + 1;
    },
  };
  for (const client of load.clients) {
    client.sink = sink;
    free.push(client);
  }

  const start = performance.now();
  windowStart = start + options.warmupMs;
  windowEnd = windowStart + options.measureMs;
  let due = 0;
  let sentInWindow = 0;
  let starved = 0;
  let pairSeq = 0;
  let openAtStart = -1;
  let openAtEnd = -1;
  let cpuAtStart: NodeJS.CpuUsage | undefined;
  let cpuInWindow = 0;
  let deliveredAtStart = 0;
  let deliveredInWindow = 0;

  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      if (openAtStart < 0 && now >= windowStart) {
        openAtStart = joinedAt.size;
        cpuAtStart = process.cpuUsage();
        deliveredAtStart = load.delivered();
      }
      if (now >= windowEnd) {
        openAtEnd = joinedAt.size;
        const cpu = process.cpuUsage(cpuAtStart);
        cpuInWindow = cpu.user + cpu.system;
        deliveredInWindow = load.delivered() - deliveredAtStart;
        resolve();
        return;
      }
      const target = Math.floor(((now - start) / 1_000) * rate);
      while (due + 2 <= target) {
        due += 2;
        const inWindow = now >= windowStart;
        if (free.size < 2) {
          if (inWindow) starved += 2;
          continue;
        }
        const pool = `${options.poolPrefix}${pairSeq++ % options.pools}`;
        for (let i = 0; i < 2; i++) {
          const client = free.shift()!;
          joinedAt.set(client, performance.now());
          client.join(pool);
        }
        if (inWindow) sentInWindow += 2;
      }
      if (joinedAt.size > openMax) openMax = joinedAt.size;
      setTimeout(tick, tickMs);
    };
    tick();
  });

  // Let the open searches finish, then cancel stragglers so that the next run starts clean.
  const drainUntil = performance.now() + options.drainMs;
  while (joinedAt.size > 0 && performance.now() < drainUntil) await sleep(10);
  const stragglers = joinedAt.size;
  if (stragglers > 0) {
    for (const client of joinedAt.keys()) client.cancel();
    const cancelUntil = performance.now() + 5_000;
    while (joinedAt.size > 0 && performance.now() < cancelUntil) await sleep(10);
    joinedAt.clear();
  }
  for (const client of load.clients) client.sink = undefined;

  const seconds = options.measureMs / 1_000;
  const partial = {
    targetJoinsPerSecond: rate,
    joinsPerSecond: sentInWindow / seconds,
    matchesPerSecond: matchesInWindow / seconds,
    openAtStart,
    openAtEnd,
    openMax,
    starved,
    failures,
    deliveriesPerMatch: matchesInWindow > 0 ? deliveredInWindow / matchesInWindow : Number.NaN,
    generatorCpuUsPerMatch: matchesInWindow > 0 ? cpuInWindow / matchesInWindow : Number.NaN,
    stragglers,
  };
  const verdict = judgeSustained(partial);
  return { ...partial, latency, sustained: verdict === 'sustained', verdict };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
