// Browser benchmark of the web editor (issue 12), `make bench-web`:
// - keystroke-to-remote-render latency between two Chromium pages: from the
//   keydown in Alice's page to the first animation frame after Bob's Monaco
//   model holds that keystroke (both clocks are this machine's, read as
//   performance.timeOrigin + page time);
// - page load to editable editor (navigation start → Monaco bound to the
//   synced document and writable), fresh context (cold cache) each time;
// - the bundle: every file of web/dist, raw, gzip and brotli.
// Prints a Markdown table; KEYS (default 300) and LOADS (default 10) scale it.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync, brotliCompressSync } from 'node:zlib';
import { createSession, DIST, grant, launch, newPage, openSession, startWebServer, waitForEditor } from './browser.js';

const KEYS = Number(process.env.KEYS ?? 300);
const LOADS = Number(process.env.LOADS ?? 10);
const DELAY = Number(process.env.KEY_DELAY_MS ?? 25);

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const f1 = (x) => x.toFixed(1);

function bundle() {
  let raw = 0, gz = 0, br = 0, files = 0;
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) { walk(p); continue; }
      if (/\.(gz|br)$/.test(name)) continue;
      const data = readFileSync(p);
      files++;
      raw += data.length;
      gz += gzipSync(data, { level: 9 }).length;
      br += brotliCompressSync(data).length;
    }
  };
  walk(DIST);
  return { files, raw, gz, br };
}

const srv = await startWebServer();
const browser = await launch();
try {
  const aliceToken = srv.token('alice', {}, { name: 'Alice' });
  const bobToken = srv.token('bob', {}, { name: 'Bob' });
  const sid = (await createSession(srv, aliceToken, { title: 'bench', language: 'rust' })).id;
  await grant(srv, aliceToken, sid, 'bob', 'editor');

  // ---- page load to editable, cold cache each time ----
  const loads = [];
  const transferred = [];
  for (let i = 0; i < LOADS; i++) {
    const page = await newPage(browser);
    let bytes = 0;
    page.on('response', async (r) => {
      const len = Number((await r.allHeaders())['content-length'] ?? 0);
      bytes += len;
    });
    await page.goto(`${srv.url}/s/${sid}#token=${aliceToken}`);
    // Bound to the synced document and writable (the role arrived).
    await waitForEditor(page);
    await page.waitForFunction(() => window.__tandem.role === 'owner', null, { polling: 'raf' });
    loads.push(await page.evaluate(() => performance.now()));
    transferred.push(bytes);
    await page.context().close();
  }

  // ---- keystroke to remote render ----
  const alice = await openSession(browser, srv, sid, aliceToken);
  const bob = await openSession(browser, srv, sid, bobToken);
  await bob.evaluate(() => {
    window.__renders = [];
    const ed = window.__tandem.editor;
    ed.getModel().onDidChangeContent(() => {
      const len = ed.getModel().getValueLength();
      requestAnimationFrame(() => window.__renders.push({ len, t: performance.timeOrigin + performance.now() }));
    });
  });
  await alice.evaluate(() => {
    window.__keys = [];
    document.addEventListener('keydown', (e) => { if (e.key.length === 1) window.__keys.push(performance.timeOrigin + e.timeStamp); }, true);
  });
  await alice.click('#editor .view-lines');
  await alice.keyboard.press('Control+End');
  const base = await alice.evaluate(() => window.__tandem.editor.getModel().getValueLength());
  const alphabet = 'abcdefghijklmnopqrstuvwxyz';
  for (let i = 0; i < KEYS; i++) {
    await alice.keyboard.type(alphabet[i % 26]);
    await new Promise((r) => setTimeout(r, DELAY));
  }
  await bob.waitForFunction((n) => window.__tandem.editor.getModel().getValueLength() >= n, base + KEYS, { timeout: 20000 });
  await new Promise((r) => setTimeout(r, 200));
  const keys = await alice.evaluate(() => window.__keys);
  const renders = await bob.evaluate(() => window.__renders);
  const lat = [];
  for (let k = 0; k < Math.min(keys.length, KEYS); k++) {
    const r = renders.find((x) => x.len >= base + k + 1);
    if (r) lat.push(r.t - keys[k]);
  }
  const b = bundle();
  const kib = (n) => `${(n / 1024).toFixed(0)} KiB`;
  console.log(`\n## Web editor in Chromium (${new Date().toISOString().slice(0, 10)}, ${KEYS} keystrokes ${DELAY} ms apart, ${LOADS} cold loads)\n`);
  console.log('| measure | p50 | p99 | max |');
  console.log('|---|---|---|---|');
  console.log(`| keystroke → remote render (ms, n=${lat.length}) | ${f1(pct(lat, 50))} | ${f1(pct(lat, 99))} | ${f1(Math.max(...lat))} |`);
  console.log(`| page load → editable editor (ms, n=${loads.length}) | ${f1(pct(loads, 50))} | ${f1(pct(loads, 99))} | ${f1(Math.max(...loads))} |`);
  console.log(`\nBundle (web/dist, ${b.files} files, Monaco included): ${kib(b.raw)} raw, ${kib(b.gz)} gzip, ${kib(b.br)} brotli;` +
    ` a session page load transfers ${kib(pct(transferred, 50))} (brotli, as served).`);
} finally {
  await browser.close();
  await srv.stop();
}
