import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
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

/** Gzipped size in bytes of a minified browser bundle of `contents` (a module in the repository root). */
async function gzippedBundle(contents: string): Promise<number> {
  const result = await build({
    absWorkingDir: root,
    stdin: { contents, resolveDir: root, loader: 'ts' },
    bundle: true,
    minify: true,
    write: false,
    platform: 'browser',
    format: 'esm',
    external: PEERS,
    logLevel: 'silent',
  });
  const [output] = result.outputFiles;
  if (!output) throw new Error('esbuild wrote nothing');
  return gzipSync(output.contents, { level: 9 }).length;
}

/**
 * Size budgets (minified + gzip), a little above today's sizes so that an accidental heavy import fails here.
 * Raise a budget on purpose, in the same change that says why (README "Bundle size").
 */
const SIZE_BUDGETS = [
  {
    what: 'createMatchmaker (every tier)',
    contents: "export { createMatchmaker } from './src/index';",
    bytes: 22_000,
  },
  {
    what: 'Matchmaker + QueueStrategy only',
    contents: "export { Matchmaker, QueueStrategy } from './src/index';",
    bytes: 8_000,
  },
  { what: 'supabase-matchmaker/react', contents: "export * from './src/react/index';", bytes: 1_500 },
];

describe('browser bundle size', () => {
  it.each(SIZE_BUDGETS)('$what stays within $bytes bytes gzipped', async ({ contents, bytes }) => {
    const size = await gzippedBundle(contents);
    expect(size).toBeGreaterThan(0);
    expect(size).toBeLessThanOrEqual(bytes);
  });

  it('importing one tier tree-shakes the others away', async () => {
    const all = await gzippedBundle("export { createMatchmaker } from './src/index';");
    const one = await gzippedBundle("export { Matchmaker, QueueStrategy } from './src/index';");
    expect(one).toBeLessThan(all / 2);
  });
});

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
