#!/usr/bin/env bash
# Runs the vitest suite on Node 22 (from the npm package `node@22`, cached in .ci/cache/node22), so the SDK is
# proven on both supported Node majors without touching the system Node. Extra arguments go to both vitest passes.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=.ci/cache/node22
node22="$prefix/node_modules/.bin/node"
if ! "$node22" --version 2>/dev/null | grep -q '^v22\.'; then
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-save --no-audit --no-fund --no-package-lock node@22 >&2
fi
echo "vitest on $("$node22" --version)" >&2
# Same two passes as `npm run test:vitest`: everything but the scale tests in parallel, then the scale tests
# (hundreds of real clients each) one file at a time, so they never compete with each other for the 2 cores.
"$node22" node_modules/vitest/vitest.mjs run --exclude '**/*.scale.test.ts' "$@"
exec "$node22" node_modules/vitest/vitest.mjs run scale.test --no-file-parallelism "$@"
