import type { LayoutServerLoad } from './$types';
import { config } from '$lib/server/config';
import { snapshot } from '$lib/server/focus';

// The page renders the timer as the server has it; SSE keeps it current from then on.
export const load: LayoutServerLoad = ({ locals }) => ({
  sseUrl: config.sseUrl,
  snapshot: snapshot(locals.userId),
});
