/**
 * The WebSocket server of the `C_rtt` and `C_fan` calibration figures, built on `ws` like the local Realtime
 * emulator. `/echo` sends every message back to its sender; on `/fan`, a message from the publisher
 * (`/fan?role=publisher`) is sent to every other connection, once per connection, as `ws` broadcast does.
 *
 * @packageDocumentation
 */
import { type WebSocket, WebSocketServer } from 'ws';

/** A running calibration server. */
export interface WsCalibrationServer {
  /** Port on 127.0.0.1. */
  readonly port: number;
  /** Close every connection and the server. */
  close(): Promise<void>;
}

/** Start the calibration server on an ephemeral port of 127.0.0.1. */
export async function startWsCalibrationServer(): Promise<WsCalibrationServer> {
  const subscribers = new Set<WebSocket>();
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, backlog: 4096, perMessageDeflate: false });
  wss.on('connection', (socket, request) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    socket.on('error', () => socket.terminate());
    if (url.pathname === '/echo') {
      socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
    } else if (url.pathname === '/fan' && url.searchParams.get('role') === 'publisher') {
      socket.on('message', (data, isBinary) => {
        for (const subscriber of subscribers) subscriber.send(data, { binary: isBinary });
      });
    } else if (url.pathname === '/fan') {
      subscribers.add(socket);
      socket.on('close', () => subscribers.delete(socket));
    } else {
      socket.close(4404, 'unknown path');
    }
  });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  const address = wss.address();
  if (typeof address === 'string' || address === null) throw new Error('calibration server has no TCP port');
  return {
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close(() => resolve());
      }),
  };
}
