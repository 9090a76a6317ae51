import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** The entry points a browser bundle may import: the core and every strategy, and the React hooks. */
const BROWSER_ENTRIES = ['src/index.ts', 'src/react/index.ts'];
/** Peer dependencies the host app brings; they are not part of our bundle. */
const PEERS = ['react', '@supabase/supabase-js'];

const nodeBuiltins = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));

/** Every module a browser bundle of `entry` pulls in, as esbuild resolves it for `platform: 'browser'`. */
async function browserBundle(entry: string): Promise<{ inputs: string[]; imports: string[] }> {
  const result = await build({
    absWorkingDir: root,
    entryPoints: [entry],
    bundle: true,
    write: false,
    metafile: true,
    platform: 'browser',
    format: 'esm',
    external: PEERS,
    logLevel: 'silent',
  });
  const inputs = Object.keys(result.metafile.inputs);
  const imports = Object.values(result.metafile.inputs).flatMap((input) => input.imports.map((i) => i.path));
  return { inputs, imports };
}

describe('browser safety', () => {
  it.each(BROWSER_ENTRIES)('%s bundles for the browser without a Node built-in', async (entry) => {
    const { inputs, imports } = await browserBundle(entry);
    expect(inputs.length).toBeGreaterThan(1);
    expect(imports.filter((path) => nodeBuiltins.has(path))).toEqual([]);
    // Nothing from the Node-only subpaths leaks in through an import chain.
    expect(inputs.filter((path) => /^src\/(server|testing|migrations)\//.test(path))).toEqual([]);
    expect(inputs.filter((path) => /node_modules\/(pg|ws|ioredis|prom-client|jose)\//.test(path))).toEqual(
      [],
    );
  });

  it('fails for a module that does import a Node built-in (the check can fail)', async () => {
    await expect(browserBundle('src/server/index.ts')).rejects.toThrow(/node|built/i);
  });
});
