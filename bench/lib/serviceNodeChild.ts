/**
 * Child-process entry of one service node for `bench/service.bench.ts`: starts a `MatchmakingServer` with the
 * options of the `BENCH_SERVICE_NODE` environment variable (JSON, {@link ServiceNodeChildOptions}), tells the
 * parent `{ type: 'listening', … }` over IPC, answers `{ type: 'stats' }` with its memory, CPU time and counters
 * (after a full garbage collection when asked: the process runs with `--expose-gc`), and drains on
 * `{ type: 'close' }` or when the parent goes away. Started through `bash -c 'ulimit -n …; exec node …'` so that
 * it can hold more sockets than the bench process (see `startServiceNode` in `bench/lib/serviceProcesses.ts`).
 *
 * @packageDocumentation
 */

import { monitorEventLoopDelay } from 'node:perf_hooks';
import {
  createMatchmakingServer,
  type MatchmakingServer,
  type RedisConnectionOptions,
} from '../../src/server/index';
import { readMaxOpenFiles } from './openFiles';

/** Options of the node, passed as JSON in `BENCH_SERVICE_NODE`. */
export interface ServiceNodeChildOptions {
  readonly jwtSecret: string;
  readonly redis: RedisConnectionOptions;
  readonly keyPrefix: string;
  readonly shards?: number;
  readonly nodeId?: string;
  readonly host?: string;
  /** Per-user join limit; `false` to turn it off. */
  readonly joinRateLimit?: { readonly perSecond: number; readonly burst: number } | false;
  readonly heartbeatIntervalMs?: number;
}

/** IPC messages from the parent. */
export type ServiceNodeRequest =
  | { readonly type: 'stats'; readonly req: number; readonly gc: boolean }
  | { readonly type: 'close' };

/** What {@link ServiceNodeRequest} `stats` answers. */
export interface ServiceNodeStats {
  readonly type: 'stats';
  readonly req: number;
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  readonly heapTotalBytes: number;
  readonly externalBytes: number;
  readonly connections: number;
  /** CPU time of the process so far, user + system, in microseconds. */
  readonly cpuUs: number;
  /** `matchmaker_matches_total` of this node. */
  readonly matches: number;
  /** Longest event-loop delay since the previous `stats` (how long the node could not react), in ms. */
  readonly loopDelayMaxMs: number;
}

/** IPC message once the node listens. */
export interface ServiceNodeListening {
  readonly type: 'listening';
  readonly url: string;
  readonly nodeId: string;
  readonly pid: number;
  /** Soft limit of open files of this process (`ulimit -n`), as read from `/proc/self/limits`. */
  readonly maxOpenFiles: number;
}

/** IPC message when the node could not start. */
export interface ServiceNodeFailed {
  readonly type: 'failed';
  readonly message: string;
}

async function counterValue(server: MatchmakingServer): Promise<number> {
  const metric = await server.metrics.matches.get();
  return metric.values[0]?.value ?? 0;
}

async function main(): Promise<void> {
  const send = process.send?.bind(process);
  if (!send) throw new Error('serviceNodeChild must be started with an IPC channel');
  const raw = process.env.BENCH_SERVICE_NODE;
  if (!raw) throw new Error('BENCH_SERVICE_NODE is not set');
  const o = JSON.parse(raw) as ServiceNodeChildOptions;
  let server: MatchmakingServer;
  try {
    server = await createMatchmakingServer({
      port: 0,
      host: o.host ?? '127.0.0.1',
      env: {},
      auth: { jwtSecret: o.jwtSecret },
      redis: o.redis,
      keyPrefix: o.keyPrefix,
      persistence: false,
      ...(o.shards === undefined ? {} : { shards: o.shards }),
      ...(o.nodeId === undefined ? {} : { nodeId: o.nodeId }),
      ...(o.joinRateLimit === undefined ? {} : { joinRateLimit: o.joinRateLimit }),
      ...(o.heartbeatIntervalMs === undefined ? {} : { heartbeatIntervalMs: o.heartbeatIntervalMs }),
    });
  } catch (error) {
    const failed: ServiceNodeFailed = {
      type: 'failed',
      message: error instanceof Error ? error.message : String(error),
    };
    send(failed);
    process.exit(1);
  }
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await server.close({ drainTimeoutMs: 2_000 }).catch(() => undefined);
    process.exit(0);
  };
  const gc = (globalThis as { gc?: () => void }).gc;
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  process.on('message', (message: ServiceNodeRequest) => {
    if (message.type === 'close') {
      void stop();
      return;
    }
    if (message.type === 'stats') {
      if (message.gc && gc) {
        gc();
        gc();
      }
      const memory = process.memoryUsage();
      const cpu = process.cpuUsage();
      void counterValue(server).then((matches) => {
        const stats: ServiceNodeStats = {
          type: 'stats',
          req: message.req,
          rssBytes: memory.rss,
          heapUsedBytes: memory.heapUsed,
          heapTotalBytes: memory.heapTotal,
          externalBytes: memory.external,
          connections: server.connectionCount,
          cpuUs: cpu.user + cpu.system,
          matches,
          loopDelayMaxMs: loopDelay.max / 1e6,
        };
        loopDelay.reset();
        send(stats);
      });
    }
  });
  process.on('disconnect', () => void stop());
  process.on('SIGTERM', () => void stop());
  const listening: ServiceNodeListening = {
    type: 'listening',
    url: server.url,
    nodeId: server.nodeId,
    pid: process.pid,
    maxOpenFiles: readMaxOpenFiles(),
  };
  send(listening);
}

await main();
