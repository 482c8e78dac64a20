import adapter from '@sveltejs/adapter-node';
import { vitePreprocess } from '@sveltejs/vite-plugin-svelte';

/** @type {import('@sveltejs/kit').Config} */
const config = {
  preprocess: vitePreprocess(),
  kit: {
    // `npm run build` writes build/; `node build` serves it (PORT, HOST, ORIGIN: adapter-node's
    // variables). EXAMPLE_BUILD_DIR puts the output elsewhere (the test builds into a scratch dir).
    adapter: adapter({ out: process.env.EXAMPLE_BUILD_DIR || 'build' }),
  },
};

export default config;
