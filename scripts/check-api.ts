/**
 * Checks the published API surface against `api/exports.json`, so no export appears, disappears or changes kind
 * without a maintainer seeing it (and deciding the semver bump and the CHANGELOG line).
 *
 * For every subpath of package.json's `exports` map (but `./package.json`), after `npm run build`:
 * - the names the ESM build and the CJS build export at run time must be the same;
 * - the names its `.d.ts` exports, each with its kind (`value` when it exists at run time, `type` otherwise), must
 *   equal the recorded ones, and every `value` must be a run-time export.
 *
 * Usage: `tsx scripts/check-api.ts` (part of `npm run check:package`), `tsx scripts/check-api.ts --update` (or
 * `npm run api:update`) to record the current surface after an intended change.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';

type Surface = Record<string, { values: string[]; types: string[] }>;

interface ExportTarget {
  readonly import: { readonly types: string; readonly default: string };
  readonly require: { readonly types: string; readonly default: string };
}

const root = resolve(import.meta.dirname, '..');
const recordPath = resolve(root, 'api/exports.json');
const pkg = JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8')) as {
  exports: Record<string, ExportTarget | string>;
};
const require = createRequire(import.meta.url);

function declaredExports(dtsPath: string): { values: string[]; types: string[] } {
  const program = ts.createProgram([dtsPath], { strict: true, skipLibCheck: true, noEmit: true });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(dtsPath);
  const moduleSymbol = source && checker.getSymbolAtLocation(source);
  if (!moduleSymbol) throw new Error(`${dtsPath}: not a module`);
  const values: string[] = [];
  const types: string[] = [];
  for (const symbol of checker.getExportsOfModule(moduleSymbol)) {
    const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
    (target.flags & ts.SymbolFlags.Value ? values : types).push(symbol.getName());
  }
  return { values: values.sort(), types: types.sort() };
}

async function currentSurface(): Promise<{ surface: Surface; problems: string[] }> {
  const surface: Surface = {};
  const problems: string[] = [];
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    if (typeof target === 'string') continue;
    const esm = Object.keys(await import(pathToFileURL(resolve(root, target.import.default)).href)).sort();
    const cjs = Object.keys(require(resolve(root, target.require.default)) as object)
      .filter((name) => name !== '__esModule')
      .sort();
    if (esm.join() !== cjs.join()) {
      problems.push(`${subpath}: ESM exports [${esm}] but CJS exports [${cjs}]`);
    }
    const declared = declaredExports(resolve(root, target.import.types));
    const declaredCjs = declaredExports(resolve(root, target.require.types));
    if (JSON.stringify(declared) !== JSON.stringify(declaredCjs)) {
      problems.push(`${subpath}: the .d.ts and .d.cts declare different exports`);
    }
    const missing = declared.values.filter((name) => !esm.includes(name));
    if (missing.length > 0)
      problems.push(`${subpath}: declared as values but not exported at run time: ${missing}`);
    const undeclared = esm.filter((name) => !declared.values.includes(name));
    if (undeclared.length > 0)
      problems.push(`${subpath}: exported at run time but not declared: ${undeclared}`);
    surface[subpath] = declared;
  }
  return { surface, problems };
}

function diff(recorded: Surface, current: Surface): string[] {
  const lines: string[] = [];
  for (const subpath of new Set([...Object.keys(recorded), ...Object.keys(current)])) {
    for (const kind of ['values', 'types'] as const) {
      const before = new Set(recorded[subpath]?.[kind] ?? []);
      const after = new Set(current[subpath]?.[kind] ?? []);
      for (const name of after)
        if (!before.has(name)) lines.push(`+ ${subpath} ${kind.slice(0, -1)} ${name}`);
      for (const name of before)
        if (!after.has(name)) lines.push(`- ${subpath} ${kind.slice(0, -1)} ${name}`);
    }
  }
  return lines;
}

const { surface, problems } = await currentSurface();
if (problems.length > 0) {
  console.error(`check-api: the build is inconsistent:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
if (process.argv.includes('--update')) {
  writeFileSync(recordPath, `${JSON.stringify(surface, null, 2)}\n`);
  console.log(`check-api: recorded ${Object.keys(surface).length} entry points in api/exports.json`);
} else {
  const recorded = JSON.parse(readFileSync(recordPath, 'utf8')) as Surface;
  const changes = diff(recorded, surface);
  if (changes.length > 0) {
    console.error(
      `check-api: the public API changed:\n  ${changes.join('\n  ')}\n` +
        'If intended: decide the semver bump (a removal or a changed kind is breaking), add a CHANGELOG line, ' +
        'then run `npm run api:update` and commit api/exports.json.',
    );
    process.exit(1);
  }
  const count = Object.values(surface).reduce((n, s) => n + s.values.length + s.types.length, 0);
  console.log(
    `check-api: ${count} exports over ${Object.keys(surface).length} entry points match api/exports.json`,
  );
}
