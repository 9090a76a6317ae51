// Serves the match-buddy Edge Function's handler under Deno on an ephemeral port, for test/edge. The function's
// own index.ts calls Deno.serve(handler) the way Supabase's runtime expects; this file only picks the port.
import { envFromDeno, handleMatchBuddy } from '../../supabase/functions/match-buddy/handler.ts';

const env = envFromDeno();
Deno.serve(
  { hostname: '127.0.0.1', port: 0, onListen: ({ port }) => console.log(`match-buddy listening on ${port}`) },
  (req) => handleMatchBuddy(req, env),
);
