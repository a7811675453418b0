// Browser test helpers: Debian's Chromium driven by playwright-core against
// the real `tandem` binary (started by the Node suite's harness, serving this
// folder's `dist/`). Screenshots go to e2e/artifacts/.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, waitFor } from '../../tests/node/test/harness.js';

const here = dirname(fileURLToPath(import.meta.url));
export const DIST = resolve(here, '../dist');
export const ARTIFACTS = resolve(here, 'artifacts');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
mkdirSync(ARTIFACTS, { recursive: true });

export { waitFor };

/** A server serving the built web app (`npm run build` first). */
export function startWebServer(extra = []) {
  return startServer(['--web-dir', DIST, ...extra]);
}

export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-renderer-backgrounding',
      '--disable-background-timer-throttling', '--disable-backgrounding-occluded-windows'],
  });
}

/** A fresh browser context (its own localStorage) and page; page errors fail loudly. */
export async function newPage(browser, { width = 1280, height = 760, dark = false } = {}) {
  const ctx = await browser.newContext({ viewport: { width, height }, colorScheme: dark ? 'dark' : 'light' });
  const page = await ctx.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e));
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(new Error(m.text())); });
  return page;
}

export async function shot(page, name) {
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

/** Opens `/s/<id>` signed in with `token` (URL fragment) and waits for the editor to be bound. */
export async function openSession(browser, srv, sessionId, token, opts) {
  const page = await newPage(browser, opts);
  await page.goto(`${srv.url}/s/${sessionId}#token=${token}`);
  await waitForEditor(page);
  return page;
}

export async function waitForEditor(page, fileId = 'main') {
  await page.waitForFunction((f) => window.__tandem?.bindings?.has(f) && window.__tandem.active === f, fileId, { timeout: 15000 });
}

/** The text of the model shown in the page's editor. */
export const editorText = (page) => page.evaluate(() => window.__tandem.editor.getValue());

/** The text of a file's Yjs document in the page. */
export const docText = (page, fileId = 'main') =>
  page.evaluate((f) => window.__tandem.provider.handle(f)?.text.toString() ?? null, fileId);

/** Clicks into the editor (at the end of the text) and types like a person. */
export async function typeAtEnd(page, text) {
  await page.click('#editor .view-lines');
  await page.keyboard.press('Control+End');
  await page.keyboard.type(text, { delay: 10 });
}

/** Waits until `f()` resolves to `expected` (deep string compare), with the last value in the error. */
export async function until(what, f, expected, timeout = 8000) {
  let last;
  await waitFor(what, async () => { last = await f(); return last === expected; }, timeout, () => `last value: ${JSON.stringify(last)}\nexpected:   ${JSON.stringify(expected)}`);
}

/** Creates a session over HTTP as `token`'s user. */
export async function createSession(srv, token, body = { title: 'Pairing', language: 'typescript' }) {
  const r = await srv.http('/api/sessions', { token, method: 'POST', body });
  if (r.status !== 201) throw new Error(`create session: ${r.status} ${await r.text()}`);
  return r.json();
}

export async function grant(srv, ownerToken, sessionId, userId, role) {
  const r = await srv.http(`/api/sessions/${sessionId}/participants/${userId}`, { token: ownerToken, method: 'PUT', body: { role } });
  if (!r.ok) throw new Error(`grant ${role}: ${r.status} ${await r.text()}`);
}
