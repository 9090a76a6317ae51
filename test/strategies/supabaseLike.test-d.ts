import { createClient } from '@supabase/supabase-js';
import { describe, expectTypeOf, it } from 'vitest';
import type { SupabaseLike } from '../../src/strategies/supabaseLike';

describe('SupabaseLike', () => {
  it('is satisfied by the pinned supabase-js client', () => {
    const client = createClient('http://localhost', 'key');
    expectTypeOf(client).toExtend<SupabaseLike>();
    const asLike: SupabaseLike = client;
    void asLike;
  });
});
