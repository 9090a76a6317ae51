/**
 * Child processes and Redis plumbing of `bench/service.bench.ts`: service nodes and holders of idle client
 * sockets, each started through `bash -c 'ulimit -n …; exec node …'` so that it may hold more sockets than the
 * bench process; the test Redis Cluster of `scripts/redis-cluster.sh`; Redis CPU time; deletion of the run's keys.
 * Every child is killed on Ctrl-C (`onInterrupt`).
 *
 * @packageDocumentation
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import type { RedisConnectionOptions } from '../../src/server/index';
import { onInterrupt } from './cleanup';
import type { IdleClientsOptions, IdleClientsReady, IdleClientsRequest } from './idleClientsChild';
import type {
  ServiceNodeChildOptions,
  ServiceNodeFailed,
  ServiceNodeListening,
  ServiceNodeRequest,
  ServiceNodeStats,
} from './serviceNodeChild';

/** Open-file limit asked of every child (the shell falls back to its hard limit when it may not raise it). */
export const CHILD_OPEN_FILES = 200_000;

const TSX = import.meta.resolve('tsx');

/**
 * Spawn `node <entry>` (TypeScript through tsx, with `--expose-gc`) under `bash -c 'ulimit -n <openFiles>'`,
 * with an IPC channel. When the shell may not raise the limit (no CAP_SYS_RESOURCE), it takes its hard limit.
 */
function spawnNodeChild(entry: string, env: Record<string, string>, openFiles: number): ChildProcess {
  const script = `ulimit -n ${openFiles} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"`;
  // BENCH_SERVICE_NODE_ARGS: extra Node flags for the children, e.g. `--cpu-prof` to profile the nodes.
  const extra = (process.env.BENCH_SERVICE_NODE_ARGS ?? '').split(/\s+/).filter((arg) => arg !== '');
  return spawn(
    'bash',
    ['-c', script, 'bash', process.execPath, '--expose-gc', ...extra, '--import', TSX, fileURLToPath(entry)],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, ...env } },
  );
}

/** Wait for the first IPC message matching `accept`, failing on exit or after `timeoutMs`. */
function nextMessage<T>(
  child: ChildProcess,
  accept: (message: unknown) => T | undefined,
  what: string,
  timeoutMs: number,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: unknown) => {
      const value = accept(message);
      if (value === undefined) return;
      done();
      resolve(value);
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      done();
      reject(new Error(`${what}: the child process exited (${signal ?? code})`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${what}: no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

async function stopChild(child: ChildProcess, message: { type: 'close' }, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (child.connected) child.send(message);
  else child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

/** A service node running in a child process. */
export interface ServiceNodeProcess {
  readonly url: string;
  readonly nodeId: string;
  readonly pid: number;
  /** The child's `ulimit -n`. */
  readonly maxOpenFiles: number;
  /** Memory, CPU time and counters of the node, after a full GC when `gc`. */
  stats(gc?: boolean): Promise<ServiceNodeStats>;
  /** Drain and stop the node. Idempotent. */
  close(): Promise<void>;
}

/** Start a service node in a child process (see `bench/lib/serviceNodeChild.ts`). */
export async function startServiceNode(options: ServiceNodeChildOptions): Promise<ServiceNodeProcess> {
  const child = spawnNodeChild(
    new URL('./serviceNodeChild.ts', import.meta.url).href,
    { BENCH_SERVICE_NODE: JSON.stringify(options) },
    CHILD_OPEN_FILES,
  );
  const unregister = onInterrupt(() => {
    child.kill('SIGKILL');
  });
  let listening: ServiceNodeListening;
  try {
    listening = await nextMessage(
      child,
      (m) => {
        const message = m as ServiceNodeListening | ServiceNodeFailed;
        if (message.type === 'failed') throw new Error(`service node failed to start: ${message.message}`);
        return message.type === 'listening' ? message : undefined;
      },
      'service node start',
      60_000,
    );
  } catch (error) {
    unregister();
    child.kill('SIGKILL');
    throw error;
  }
  let req = 0;
  let closing: Promise<void> | undefined;
  return {
    url: listening.url,
    nodeId: listening.nodeId,
    pid: listening.pid,
    maxOpenFiles: listening.maxOpenFiles,
    stats(gc = false) {
      const id = ++req;
      const request: ServiceNodeRequest = { type: 'stats', req: id, gc };
      const answer = nextMessage(
        child,
        (m) => {
          const message = m as ServiceNodeStats;
          return message.type === 'stats' && message.req === id ? message : undefined;
        },
        'service node stats',
        30_000,
      );
      child.send(request);
      return answer;
    },
    close() {
      closing ??= stopChild(child, { type: 'close' }, 10_000).finally(unregister);
      return closing;
    },
  };
}

/** Idle authenticated sockets held by a child process (see `bench/lib/idleClientsChild.ts`). */
export interface IdleClientsProcess {
  /** Sockets that got their `welcome`, and how many failed (with the first error). */
  readonly ready: IdleClientsReady;
  /** Close every socket and stop the child. Idempotent. */
  close(): Promise<void>;
}

/** Open `options.targets` idle authenticated sockets from a child process; resolves when all are settled. */
export async function startIdleClients(
  options: IdleClientsOptions,
  timeoutMs: number,
): Promise<IdleClientsProcess> {
  const child = spawnNodeChild(
    new URL('./idleClientsChild.ts', import.meta.url).href,
    { BENCH_IDLE_CLIENTS: JSON.stringify(options) },
    CHILD_OPEN_FILES,
  );
  const unregister = onInterrupt(() => {
    child.kill('SIGKILL');
  });
  let closing: Promise<void> | undefined;
  const close = () => {
    const request: IdleClientsRequest = { type: 'close' };
    closing ??= stopChild(child, request, 20_000).finally(unregister);
    return closing;
  };
  try {
    const ready = await nextMessage(
      child,
      (m) => ((m as IdleClientsReady).type === 'ready' ? (m as IdleClientsReady) : undefined),
      'idle clients',
      timeoutMs,
    );
    return { ready, close };
  } catch (error) {
    await close();
    throw error;
  }
}

const CLUSTER_SCRIPT = fileURLToPath(new URL('../../scripts/redis-cluster.sh', import.meta.url));

/** Seed URLs of the 3-master test Redis Cluster, started by `scripts/redis-cluster.sh` (idempotent). */
export async function redisClusterSeeds(): Promise<string[]> {
  const { stdout } = await promisify(execFile)('bash', [CLUSTER_SCRIPT], { timeout: 120_000 });
  return stdout.trim().split(',');
}

function hostPort(seed: string): { host: string; port: number } {
  const url = new URL(seed.includes('://') ? seed : `redis://${seed}`);
  return { host: url.hostname, port: Number(url.port || 6379) };
}

/** Plain connections to every Redis server behind `redis` (each master of a cluster). */
async function redisServers(redis: RedisConnectionOptions): Promise<Redis[]> {
  if ('url' in redis) return [new Redis(redis.url, { maxRetriesPerRequest: 1 })];
  if ('cluster' in redis) {
    return redis.cluster.map((seed) => new Redis({ ...hostPort(seed), maxRetriesPerRequest: 1 }));
  }
  return [];
}

/** CPU time (user + system, seconds) of every Redis server behind `redis`, summed (from `INFO cpu`). */
export async function redisCpuSeconds(redis: RedisConnectionOptions): Promise<number> {
  const servers = await redisServers(redis);
  try {
    let total = 0;
    for (const server of servers) {
      const info = await server.info('cpu');
      for (const field of ['used_cpu_sys', 'used_cpu_user']) {
        const match = new RegExp(`^${field}:([\\d.]+)`, 'm').exec(info);
        total += Number(match?.[1] ?? 0);
      }
    }
    return total;
  } finally {
    for (const server of servers) server.disconnect();
  }
}

/** Delete every key under `prefix` on every Redis server (every master of a cluster) behind `redis`. */
export async function deleteRedisKeys(redis: RedisConnectionOptions, prefix: string): Promise<number> {
  let deleted = 0;
  if ('cluster' in redis) {
    // Through a cluster client, so that the masters are those of the current slot map.
    const cluster = new Cluster(redis.cluster.map(hostPort), { redisOptions: { maxRetriesPerRequest: 1 } });
    try {
      await new Promise<void>((resolve, reject) => {
        cluster.once('ready', () => resolve());
        cluster.once('error', reject);
      });
      for (const master of cluster.nodes('master')) deleted += await deleteOn(master, prefix);
    } finally {
      cluster.disconnect();
    }
    return deleted;
  }
  const servers = await redisServers(redis);
  try {
    for (const server of servers) deleted += await deleteOn(server, prefix);
  } finally {
    for (const server of servers) server.disconnect();
  }
  return deleted;
}

async function deleteOn(server: Redis, prefix: string): Promise<number> {
  let deleted = 0;
  let cursor = '0';
  do {
    const [next, keys] = await server.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 2_000);
    cursor = next;
    if (keys.length === 0) continue;
    // One key per UNLINK (keys of a cluster master may live in different slots), pipelined.
    const pipeline = server.pipeline();
    for (const key of keys) pipeline.unlink(key);
    for (const [error, count] of (await pipeline.exec()) ?? []) {
      if (error) throw error;
      deleted += Number(count);
    }
  } while (cursor !== '0');
  return deleted;
}

/** Used memory (bytes) of every Redis server behind `redis`, summed (from `INFO memory`). */
export async function redisUsedMemory(redis: RedisConnectionOptions): Promise<number> {
  const servers = await redisServers(redis);
  try {
    let total = 0;
    for (const server of servers) {
      const match = /^used_memory:(\d+)/m.exec(await server.info('memory'));
      total += Number(match?.[1] ?? 0);
    }
    return total;
  } finally {
    for (const server of servers) server.disconnect();
  }
}

/** CPU time of the whole machine so far, in seconds: busy (not idle, not waiting for I/O) and in all. */
export interface MachineCpu {
  readonly busySeconds: number;
  readonly totalSeconds: number;
}

/** Read {@link MachineCpu} from `/proc/stat` (NaN without it). */
export async function readMachineCpu(): Promise<MachineCpu> {
  try {
    const line = (await readFile('/proc/stat', 'utf8')).split('\n', 1)[0] ?? '';
    const ticks = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already counted in user).
    const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
    const hz = 100; // USER_HZ on Linux
    return { busySeconds: (total - idle) / hz, totalSeconds: total / hz };
  } catch {
    return { busySeconds: Number.NaN, totalSeconds: Number.NaN };
  }
}
