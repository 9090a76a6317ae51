/**
 * Opening an authenticated raw WebSocket to a service node (`docs/service-protocol.md`: `hello` → `welcome`),
 * shared by the load generator and the idle-connection holders.
 *
 * @packageDocumentation
 */
import { WebSocket } from 'ws';

/** Options of {@link openAuthenticatedSocket}. */
export interface OpenSocketOptions {
  /** Source address to bind (spreads many sockets over loopback addresses). */
  readonly localAddress?: string;
  /** How long to wait for `welcome`. */
  readonly timeoutMs: number;
}

/** Connects, sends `hello` with `token`, and resolves once the node answers `welcome`. */
export function openAuthenticatedSocket(
  url: string,
  token: string,
  options: OpenSocketOptions,
): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, {
      perMessageDeflate: false,
      ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
    });
    const fail = (error: Error) => {
      socket.terminate();
      reject(error);
    };
    const timer = setTimeout(
      () => fail(new Error(`no welcome in ${options.timeoutMs / 1_000} s`)),
      options.timeoutMs,
    );
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.once('open', () => socket.send(JSON.stringify({ v: 1, type: 'hello', id: 'h', token })));
    socket.once('message', (data) => {
      clearTimeout(timer);
      const frame = JSON.parse(String(data)) as { type?: string; message?: string };
      if (frame.type === 'welcome') resolve(socket);
      else fail(new Error(`hello answered ${frame.type}: ${frame.message ?? ''}`));
    });
  });
}
