/**
 * Shared set-up of the service tier's tests: JWTs, service nodes on port 0 with a fresh key prefix, clients,
 * raw protocol sockets, the test Redis Cluster, and key clean-up.
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { SignJWT } from 'jose';
import { WebSocket } from 'ws';
import { Matchmaker, type MatchmakerOptions } from '../../src/index';
import type { MatchmakingServerOptions, RedisConnectionOptions } from '../../src/server/index';
import { createMatchmakingServer, type MatchmakingServer } from '../../src/server/index';
import { ServiceStrategy, type ServiceStrategyOptions } from '../../src/strategies/service/ServiceStrategy';
import { waitFor } from '../helpers/waitFor';

export const JWT_SECRET = 'service-tier-test-secret-at-least-32-characters-long';
export const SINGLE_REDIS_URL = process.env.MATCHMAKER_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Options for {@link signToken}. */
export interface TokenOptions {
  readonly secret?: string;
  readonly audience?: string;
  /** Lifetime in seconds; negative for an expired token. */
  readonly expiresIn?: number;
  readonly claims?: Record<string, unknown>;
  readonly sub?: string | null;
}

/** A Supabase-shaped access token for `userId`, signed HS256. */
export async function signToken(userId: string, options: TokenOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    iss: 'supabase',
    role: 'authenticated',
    aud: options.audience ?? 'authenticated',
    iat: now,
    exp: now + (options.expiresIn ?? 3600),
    ...options.claims,
  };
  if (options.sub !== null) claims.sub = options.sub ?? userId;
  return await new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .sign(new TextEncoder().encode(options.secret ?? JWT_SECRET));
}

/** A fresh Supabase-style user id. */
export function newUserId(): string {
  return randomUUID();
}

/** A key prefix no other test uses. */
export function freshPrefix(): string {
  return `mmtest:${randomBytes(6).toString('hex')}:`;
}

const CLUSTER_SCRIPT = fileURLToPath(new URL('../../scripts/redis-cluster.sh', import.meta.url));
let clusterSeeds: Promise<string[]> | undefined;

/** Seeds of the test Redis Cluster, started by `scripts/redis-cluster.sh` (idempotent) when needed. */
export function clusterSeedUrls(): Promise<string[]> {
  clusterSeeds ??= (async () => {
    const { stdout } = await promisify(execFile)('bash', [CLUSTER_SCRIPT], { timeout: 120_000 });
    return stdout.trim().split(',');
  })();
  return clusterSeeds;
}

/** Start a node with test-friendly timings; `options` win. */
export async function startNode(
  redis: RedisConnectionOptions,
  options: Partial<MatchmakingServerOptions> = {},
): Promise<MatchmakingServer> {
  return await createMatchmakingServer({
    port: 0,
    host: '127.0.0.1',
    env: {},
    auth: { jwtSecret: JWT_SECRET },
    redis,
    keyPrefix: freshPrefix(),
    shards: 16,
    sweepIntervalMs: 100,
    nodeTimeoutMs: 1_500,
    resumeGraceMs: 5_000,
    persistence: false,
    joinRateLimit: false,
    ...options,
  });
}

/** A matchmaker for `userId` on the service at `url` (or a rotating url function). */
export function serviceMatchmaker(
  url: string | (() => string),
  userId: string,
  options: Partial<ServiceStrategyOptions> & { matchmaker?: MatchmakerOptions } = {},
): Matchmaker {
  const { matchmaker, ...strategy } = options;
  return new Matchmaker(
    new ServiceStrategy({
      url,
      getAccessToken: () => signToken(userId),
      WebSocket,
      reconnectAfterMs: () => 50,
      ...strategy,
    }),
    matchmaker,
  );
}

/** Delete every key under `prefix` (on every master of a cluster). */
export async function deleteKeys(redis: RedisConnectionOptions, prefix: string): Promise<void> {
  const clients: Redis[] = [];
  let cluster: Cluster | undefined;
  if ('url' in redis) {
    clients.push(new Redis(redis.url));
  } else if ('cluster' in redis) {
    cluster = new Cluster(
      redis.cluster.map((seed) => {
        const url = new URL(seed);
        return { host: url.hostname, port: Number(url.port) };
      }),
    );
    await new Promise<void>((resolve, reject) => {
      cluster!.once('ready', () => resolve());
      cluster!.once('error', reject);
    });
    clients.push(...cluster.nodes('master'));
  } else {
    return;
  }
  try {
    for (const client of clients) {
      let cursor = '0';
      do {
        const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        cursor = next;
        for (const key of keys) await client.del(key);
      } while (cursor !== '0');
    }
  } finally {
    if (cluster) await cluster.quit();
    else for (const client of clients) await client.quit();
  }
}

/** A frame received by a {@link RawClient}. */
export type Frame = Record<string, unknown> & { type?: string; id?: string; code?: string };

/** A bare protocol client: sends raw text, records every frame. */
export class RawClient {
  readonly socket: WebSocket;
  readonly frames: Frame[] = [];
  closeCode: number | undefined;
  #opened: Promise<void>;

  constructor(url: string) {
    this.socket = new WebSocket(url);
    this.socket.on('message', (data) => {
      this.frames.push(JSON.parse(data.toString()) as Frame);
    });
    this.socket.on('close', (code) => {
      this.closeCode = code;
    });
    this.socket.on('error', () => {});
    this.#opened = new Promise((resolve, reject) => {
      this.socket.once('open', () => resolve());
      this.socket.once('error', reject);
    });
  }

  async open(): Promise<this> {
    await this.#opened;
    return this;
  }

  send(frame: unknown): void {
    this.socket.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Send a request and wait for the frame answering its id. */
  async request(frame: Record<string, unknown>): Promise<Frame> {
    const id = (frame.id as string | undefined) ?? `q${randomBytes(4).toString('hex')}`;
    this.send({ v: 1, ...frame, id });
    return await this.next((f) => f.id === id, `answer to ${String(frame.type)} ${id}`);
  }

  async hello(token: string): Promise<Frame> {
    return await this.request({ type: 'hello', token });
  }

  /** Wait for a frame matching `predicate` (already received or future). */
  async next(predicate: (frame: Frame) => boolean, what: string): Promise<Frame> {
    return await waitFor(() => this.frames.find(predicate), what, { timeoutMs: 15_000 });
  }

  async closed(): Promise<number> {
    return await waitFor(() => this.closeCode, 'socket closed', { timeoutMs: 15_000 });
  }

  async close(): Promise<void> {
    if (this.socket.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.close();
    });
  }
}
