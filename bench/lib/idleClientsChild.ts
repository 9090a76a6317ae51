/**
 * Child-process entry that holds idle, authenticated service connections for the memory figure of
 * `bench/service.bench.ts`: opens the sockets of `BENCH_IDLE_CLIENTS` (JSON, {@link IdleClientsOptions}), each
 * from its target's loopback source address (one source address has only ~28,000 ephemeral ports), sends `hello`
 * with a token of its own user, and tells the parent `{ type: 'ready', … }` once every socket got its `welcome`
 * or failed. Then it only sends heartbeats (each socket every ~20 s, as a client would) until `{ type: 'close' }`
 * or the parent goes away.
 *
 * @packageDocumentation
 */
import { WebSocket } from 'ws';
import { readMaxOpenFiles } from './openFiles';
import { openAuthenticatedSocket } from './serviceHello';
import { newBenchUserId, signBenchToken } from './serviceTokens';

/** Sockets to open to one node from one source address. */
export interface IdleTarget {
  readonly url: string;
  readonly localAddress: string;
  readonly count: number;
}

/** Options of the child, as JSON in `BENCH_IDLE_CLIENTS`. */
export interface IdleClientsOptions {
  readonly targets: readonly IdleTarget[];
  readonly jwtSecret: string;
  /** Sockets being opened at once. */
  readonly concurrency: number;
}

/** IPC message once every socket is welcomed or failed. */
export interface IdleClientsReady {
  readonly type: 'ready';
  readonly connected: number;
  readonly failed: number;
  readonly firstError: string | undefined;
  /** The child's `ulimit -n`. */
  readonly maxOpenFiles: number;
  readonly elapsedMs: number;
}

/** IPC message from the parent. */
export interface IdleClientsRequest {
  readonly type: 'close';
}

const HEARTBEAT_EVERY_MS = 20_000;

async function openOne(url: string, localAddress: string, token: string): Promise<WebSocket> {
  const socket = await openAuthenticatedSocket(url, token, { localAddress, timeoutMs: 60_000 });
  socket.on('error', () => {});
  return socket;
}

async function main(): Promise<void> {
  const send = process.send?.bind(process);
  const raw = process.env.BENCH_IDLE_CLIENTS;
  if (!send || !raw) throw new Error('idleClientsChild needs an IPC channel and BENCH_IDLE_CLIENTS');
  const options = JSON.parse(raw) as IdleClientsOptions;
  const started = performance.now();
  const sockets: WebSocket[] = [];
  let failed = 0;
  let firstError: string | undefined;
  const jobs = options.targets.flatMap((target) => Array.from({ length: target.count }, () => target));
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const target = jobs[next++]!;
      try {
        sockets.push(
          await openOne(target.url, target.localAddress, signBenchToken(newBenchUserId(), options.jwtSecret)),
        );
      } catch (error) {
        failed += 1;
        firstError ??= `${target.localAddress} -> ${target.url}: ${error instanceof Error ? error.message : String(error)}`;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, worker));

  let beat = 0;
  const perTick = Math.ceil(sockets.length / (HEARTBEAT_EVERY_MS / 1_000));
  const heartbeat = setInterval(() => {
    for (let i = 0; i < perTick && sockets.length > 0; i++) {
      const socket = sockets[beat++ % sockets.length]!;
      if (socket.readyState === WebSocket.OPEN) socket.send(`{"v":1,"type":"heartbeat","id":"b${beat}"}`);
    }
  }, 1_000);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    clearInterval(heartbeat);
    for (const socket of sockets) socket.terminate();
    setTimeout(() => process.exit(0), 200);
  };
  process.on('message', (message: IdleClientsRequest) => {
    if (message.type === 'close') stop();
  });
  process.on('disconnect', stop);
  process.on('SIGTERM', stop);
  const ready: IdleClientsReady = {
    type: 'ready',
    connected: sockets.length,
    failed,
    firstError,
    maxOpenFiles: readMaxOpenFiles(),
    elapsedMs: Math.round(performance.now() - started),
  };
  send(ready);
}

await main();
