import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of a local server that a test can cut, to stand for a client going offline: `goOffline()`
 * destroys every open connection and refuses new ones until `goOnline()`. Unlike a client-side disconnect, the
 * client sees a real network failure and runs its own reconnect logic.
 */
export interface TcpProxy {
  /** `http://127.0.0.1:<proxy port>` */
  readonly url: string;
  goOffline(): void;
  goOnline(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetUrl: string): Promise<TcpProxy> {
  const target = new URL(targetUrl);
  const sockets = new Set<Socket>();
  let offline = false;
  const server: Server = createServer((client) => {
    if (offline) {
      client.destroy();
      return;
    }
    const upstream = connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    goOffline() {
      offline = true;
      for (const socket of sockets) socket.destroy();
    },
    goOnline() {
      offline = false;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
