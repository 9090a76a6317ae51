/**
 * Child-process entry of the WebSocket calibration server: starts {@link startWsCalibrationServer}, sends
 * `{ type: 'listening', port }` to the parent over IPC, and exits on `{ type: 'close' }` or when the parent goes
 * away. Started by `bench/lib/calibration.ts`, so that server and clients run on different cores.
 *
 * @packageDocumentation
 */
import { startWsCalibrationServer } from './wsCalibrationServer';

/** IPC message from the child to its parent. */
export interface WsChildListening {
  readonly type: 'listening';
  readonly port: number;
}

/** IPC message from the parent to the child. */
export interface WsChildClose {
  readonly type: 'close';
}

if (process.send) {
  const server = await startWsCalibrationServer();
  const stop = async (): Promise<void> => {
    await server.close();
    process.exit(0);
  };
  process.on('message', (message: WsChildClose) => {
    if (message.type === 'close') void stop();
  });
  process.on('disconnect', () => void stop());
  const listening: WsChildListening = { type: 'listening', port: server.port };
  process.send(listening);
}
