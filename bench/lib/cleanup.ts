/**
 * Cleanups that must run even when a run is interrupted (Ctrl-C): drop the throw-away database, delete the Redis
 * keys, stop child processes. Code that creates such a resource registers its cleanup here and unregisters it
 * once it has cleaned up normally; `bench/index.ts` runs what is left on SIGINT and SIGTERM.
 *
 * @packageDocumentation
 */

type Cleanup = () => Promise<void> | void;

const pending = new Set<Cleanup>();

/** Register `cleanup` to run if the run is interrupted; call the returned function once it is no longer needed. */
export function onInterrupt(cleanup: Cleanup): () => void {
  pending.add(cleanup);
  return () => {
    pending.delete(cleanup);
  };
}

/** Run every registered cleanup (newest first), each at most once, ignoring their errors. */
export async function runInterruptCleanups(): Promise<void> {
  const cleanups = [...pending].reverse();
  pending.clear();
  for (const cleanup of cleanups) {
    try {
      await cleanup();
    } catch {
      // best effort: we are exiting
    }
  }
}
