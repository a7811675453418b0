// Issue 4: the real editing trace `sveltecomponent` (J. Gentle's
// editing-traces, CC BY 4.0) typed transaction by transaction through one
// unmodified y-socket.io provider while two others watch and a fourth joins
// halfway. Every provider and the server's text (HTTP API
// `GET /api/sessions/{id}/text`) must end with exactly the trace's endContent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as Y from 'yjs';
import { SocketIOProvider } from 'y-socket.io';
import { withServer, waitFor, sleep, text } from './harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const TRACE = process.env.TANDEM_TRACES
  ? resolve(process.env.TANDEM_TRACES, 'sveltecomponent.json.gz')
  : resolve(here, '../../data/traces/sveltecomponent.json.gz');

test('[HTTP API] the sveltecomponent trace through one provider: watchers, a halfway joiner and the server end with endContent',
  { skip: existsSync(TRACE) ? false : `trace not found at ${TRACE} (set TANDEM_TRACES)`, timeout: 90000 }, async () => {
    const trace = JSON.parse(gunzipSync(readFileSync(TRACE)).toString());
    // The trace is a fast replay (18k transactions in seconds), not human typing:
    // lift the per-socket rate limit so this test is about fidelity.
    await withServer(['--on-demand-sessions', '--updates-per-second', '1000000', '--update-burst', '1000000'], async (srv) => {
      const mk = (user) => srv.track(new SocketIOProvider(srv.url, 'svelte', new Y.Doc(),
        { autoConnect: true, disableBc: true, auth: { token: srv.token(user) } }));
      const typist = mk('typist');
      await waitFor('typist connected', () => typist.socket.connected);
      const watchers = [mk('w1'), mk('w2')];
      await waitFor('watchers connected', () => watchers.every((w) => w.socket.connected));
      const ytext = typist.doc.getText('monaco');
      const half = Math.floor(trace.txns.length / 2);
      let joiner = null;
      for (let i = 0; i < trace.txns.length; i++) {
        typist.doc.transact(() => {
          for (const [pos, del, ins] of trace.txns[i].patches) {
            if (del > 0) ytext.delete(pos, del);
            if (ins) ytext.insert(pos, ins);
          }
        });
        if (i === half) {
          joiner = mk('joiner');
          await waitFor('the fourth provider joined halfway', () => joiner.socket.connected);
        }
        // Typing pace: the four providers share this one Node thread; without
        // pauses the watchers could not read while the typist writes.
        if (i % 50 === 0) await sleep(1);
      }
      assert.equal(ytext.toString(), trace.endContent, 'the replay itself');
      const all = [typist, ...watchers, joiner];
      await waitFor('every provider has endContent', () => all.every((p) => text(p.doc) === trace.endContent), 30000,
        () => all.map((p, i) => `  [${i}] ${text(p.doc).length} chars`).join('\n'));
      const res = await srv.http('/api/sessions/svelte/text', { token: srv.token('typist') });
      assert.equal(res.status, 200);
      assert.equal(await res.text(), trace.endContent, 'GET /api/sessions/svelte/text');
    });
  });
