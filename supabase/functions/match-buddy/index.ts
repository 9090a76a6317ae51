// Supabase Edge Function entry point. See handler.ts for the request and response shapes.
import { envFromDeno, handleMatchBuddy } from './handler.ts';

const env = envFromDeno();
Deno.serve((req) => handleMatchBuddy(req, env));
