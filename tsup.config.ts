import { defineConfig } from 'tsup';

export default defineConfig([
  {
    // The library: one entry per subpath of the `exports` map.
    entry: {
      index: 'src/index.ts',
      'testing/index': 'src/testing/index.ts',
      'server/index': 'src/server/index.ts',
      'migrations/index': 'src/migrations/index.ts',
      'react/index': 'src/react/index.ts',
    },
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'es2022',
    splitting: false,
    treeshake: true,
  },
  {
    // The `supabase-matchmaker` command (migrate, check, migrations, serve).
    entry: { cli: 'src/cli.ts' },
    format: ['esm'],
    sourcemap: true,
    target: 'node20',
    // `serve` is imported on demand, so `migrate` works without the service tier's optional peers.
    splitting: true,
  },
]);
