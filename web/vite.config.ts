// Vite build of Tandem's web editor. Monaco's editor worker is bundled with a
// `?worker` import (no CDN at run time); every emitted file also gets `.br`
// and `.gz` siblings so the server sends compressed bytes without compressing
// per request (tower-http's precompressed ServeDir).
import { defineConfig } from 'vitest/config';
import type { Plugin } from 'vite';
import { brotliCompressSync, gzipSync, constants } from 'node:zlib';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

function precompress(): Plugin {
  let outDir = 'dist';
  return {
    name: 'tandem-precompress',
    apply: 'build',
    configResolved(c) { outDir = c.build.outDir; },
    closeBundle() {
      const walk = (dir: string) => {
        for (const name of readdirSync(dir)) {
          const path = join(dir, name);
          if (statSync(path).isDirectory()) { walk(path); continue; }
          if (!/\.(js|css|html|svg|json|ttf|map)$/.test(name)) continue;
          const raw = readFileSync(path);
          if (raw.length < 1024) continue;
          writeFileSync(`${path}.gz`, gzipSync(raw, { level: 9 }));
          writeFileSync(`${path}.br`, brotliCompressSync(raw, {
            params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: raw.length },
          }));
        }
      };
      walk(outDir);
    },
  };
}

export default defineConfig({
  plugins: [precompress()],
  resolve: {
    alias: { 'monaco-esm': fileURLToPath(new URL('./node_modules/monaco-editor/esm/vs', import.meta.url)) },
  },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    target: 'es2022',
    chunkSizeWarningLimit: 4096,
    sourcemap: false,
  },
  worker: { format: 'es' },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:3000',
      '/socket.io': { target: 'ws://127.0.0.1:3000', ws: true },
    },
  },
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
  },
});
