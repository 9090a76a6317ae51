/**
 * The open-file limit of the current process, which bounds how many sockets it can hold.
 *
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs';

/** The soft `Max open files` limit of this process (`ulimit -n`) from `/proc/self/limits`, or NaN without `/proc`. */
export function readMaxOpenFiles(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    return Number(line?.split(/\s+/)[3]);
  } catch {
    return Number.NaN;
  }
}
