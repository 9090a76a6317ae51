/**
 * A Realtime server on a throw-away HTTP server with an in-memory database bridge, for protocol tests that
 * do not need Postgres. The bridge is programmable: publications, table columns, RLS visibility, channel
 * policies, and emitted changes / database broadcasts.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type {
  ChangeColumn,
  ChannelExtension,
  ChannelPermissions,
  DatabaseBroadcast,
  JwtClaims,
  RealtimeDatabaseBridge,
  RowChange,
} from '../../src/testing/internal/contracts';
import { createJwtIssuer, type JwtIssuer } from '../../src/testing/jwt';
import { RealtimeServer, type RealtimeServerOptions } from '../../src/testing/realtime/RealtimeServer';
import { StackCounters } from '../../src/testing/StackCounters';

/** An in-memory {@link RealtimeDatabaseBridge}. */
export class FakeBridge implements RealtimeDatabaseBridge {
  readPolicy: (
    claims: JwtClaims,
    topic: string,
    extensions: readonly ChannelExtension[],
  ) => ChannelPermissions = () => ({ read: { broadcast: true, presence: true } });
  writePolicy: (claims: JwtClaims, topic: string, extension: ChannelExtension) => boolean = () => true;
  visibility: (claims: JwtClaims, change: RowChange) => boolean = () => true;
  /** `schema.table` -> columns; every table here is published. */
  readonly tables = new Map<string, ChangeColumn[]>();
  readonly calls: string[] = [];
  readonly #changeListeners = new Set<(change: RowChange) => void>();
  readonly #broadcastListeners = new Set<(message: DatabaseBroadcast) => void>();

  async authorizeChannelRead(claims: JwtClaims, topic: string, extensions: readonly ChannelExtension[]) {
    this.calls.push(`read ${topic} ${claims.role}`);
    return this.readPolicy(claims, topic, extensions);
  }
  async authorizeChannelWrite(claims: JwtClaims, topic: string, extension: ChannelExtension) {
    this.calls.push(`write ${topic} ${extension} ${claims.role}`);
    return this.writePolicy(claims, topic, extension);
  }
  async isPublished(schema: string, table: string | undefined) {
    if (table === undefined) return [...this.tables.keys()].some((key) => key.startsWith(`${schema}.`));
    return this.tables.has(`${schema}.${table}`);
  }
  async tableColumns(schema: string, table: string) {
    return this.tables.get(`${schema}.${table}`);
  }
  async rowVisibleTo(claims: JwtClaims, change: RowChange) {
    return { visible: this.visibility(claims, change), columns: change.columns.map((column) => column.name) };
  }
  onChange(listener: (change: RowChange) => void) {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }
  onBroadcast(listener: (message: DatabaseBroadcast) => void) {
    this.#broadcastListeners.add(listener);
    return () => this.#broadcastListeners.delete(listener);
  }
  emitChange(change: RowChange): void {
    for (const listener of this.#changeListeners) listener(change);
  }
  emitBroadcast(message: DatabaseBroadcast): void {
    for (const listener of this.#broadcastListeners) listener(message);
  }
}

/** A running fake stack. */
export interface FakeRealtimeStack {
  readonly url: string;
  readonly wsUrl: string;
  readonly anonKey: string;
  readonly serviceRoleKey: string;
  readonly jwt: JwtIssuer;
  readonly bridge: FakeBridge;
  readonly counters: StackCounters;
  readonly realtime: RealtimeServer;
  stop(): Promise<void>;
}

/** Start a Realtime server with a {@link FakeBridge} on 127.0.0.1 and a random port. */
export async function startFakeRealtimeStack(
  options: Partial<Omit<RealtimeServerOptions, 'bridge' | 'verifyJwt' | 'counters'>> & {
    now?: () => number;
  } = {},
): Promise<FakeRealtimeStack> {
  const jwt = createJwtIssuer('super-secret-jwt-token-with-at-least-32-characters-long', {
    ...(options.now ? { now: options.now } : {}),
  });
  const bridge = new FakeBridge();
  const counters = new StackCounters();
  const realtime = new RealtimeServer({
    errorDelays: { joinErrorMs: 50, connectErrorMs: 50 },
    postgresSubscribeDelayMs: 20,
    ...options,
    ...(options.now ? { clock: options.now } : {}),
    bridge,
    counters,
    verifyJwt: (token) => jwt.verify(token),
  });
  const server: Server = createServer(async (req, res) => {
    if (await realtime.handleHttp(req, res)) return;
    res.writeHead(404);
    res.end();
  });
  server.on('upgrade', (req, socket, head) => realtime.handleUpgrade(req, socket, head));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}/realtime/v1/websocket`,
    anonKey: await jwt.anonKey(),
    serviceRoleKey: await jwt.serviceRoleKey(),
    jwt,
    bridge,
    counters,
    realtime,
    async stop() {
      await realtime.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
