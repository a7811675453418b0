// The web editor in a real browser (issue 12): two Chromium contexts against
// the real server. Screenshots: e2e/artifacts/*.png.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createSession, docText, editorText, grant, launch, newPage, openSession, shot, startWebServer, typeAtEnd, until,
  waitFor, waitForEditor,
} from './browser.js';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** The id of the file at `path` in the page's tree, once it is there. */
async function fileId(page, path) {
  const h = await page.waitForFunction((p) => [...window.__tandem.files.values()].find((f) => f.path === p)?.id, path, { timeout: 8000 });
  return h.jsonValue();
}

async function streamToBuffer(stream) {
  const parts = [];
  for await (const c of stream) parts.push(c);
  return Buffer.concat(parts);
}

const getText = async (srv, token, sid) => (await srv.http(`/api/sessions/${sid}/text`, { token })).text();

describe('sign-in page and my sessions', () => {
  let srv;
  before(async () => { srv = await startWebServer(); });
  after(async () => { await srv?.stop(); });

  test('a guest signs in with a name, creates a session and lands in it; the list follows per-user events', async () => {
    const page = await newPage(browser);
    await page.goto(`${srv.url}/`);
    await page.waitForSelector('#guest-form');
    await shot(page, 'signin');
    await page.fill('#guest-name', 'Grace');
    await page.click('#guest-form button[type=submit]');
    await page.waitForSelector('#new-session');
    assert.match(await page.textContent('#whoami'), /Grace/);
    const token = await page.evaluate(() => localStorage.getItem('tandem.token'));
    assert.ok(token, 'the token is kept in localStorage["tandem.token"]');

    // Someone else gives Grace a role: her list shows it without a reload.
    const owner = srv.token('olga', {}, { name: 'Olga' });
    const s = await createSession(srv, owner, { title: 'Olga shares', language: 'rust' });
    const me = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).sub;
    await grant(srv, owner, s.id, me, 'editor');
    await page.waitForSelector(`#session-list li[data-session-id="${s.id}"]`);
    assert.match(await page.textContent(`#session-list li[data-session-id="${s.id}"]`), /Olga shares.*rust.*editor/s);
    // ... and removing the role removes it.
    const del = await srv.http(`/api/sessions/${s.id}/participants/${me}`, { token: owner, method: 'DELETE' });
    assert.equal(del.status, 204);
    await page.waitForSelector(`#session-list li[data-session-id="${s.id}"]`, { state: 'detached' });

    await page.fill('#new-title', 'Grace pairs');
    await page.selectOption('#new-language', 'python');
    await page.click('#new-session button[type=submit]');
    await page.waitForURL(/\/s\/[A-Za-z0-9_-]+$/);
    await waitForEditor(page);
    assert.equal(await page.textContent('#session-title'), 'Grace pairs');
    assert.equal(await page.evaluate(() => window.__tandem.editor.getModel().getLanguageId()), 'python');
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });

  test('without a bundle, / says how to build it', async () => {
    const bare = await (await import('../../tests/node/test/harness.js')).startServer(['--web-dir', '/nonexistent']);
    try {
      const r = await fetch(`${bare.url}/`);
      assert.equal(r.status, 503);
      assert.match(await r.text(), /make web/);
    } finally { await bare.stop(); }
  });
});

describe('two people in one session', () => {
  let srv, sid, alice, bob, aliceToken, bobToken;
  before(async () => {
    srv = await startWebServer();
    aliceToken = srv.token('alice', {}, { name: 'Alice' });
    bobToken = srv.token('bob', {}, { name: 'Bob' });
    sid = (await createSession(srv, aliceToken, { title: 'Pairing', language: 'typescript' })).id;
    await grant(srv, aliceToken, sid, 'bob', 'editor');
    alice = await openSession(browser, srv, sid, aliceToken);
    bob = await openSession(browser, srv, sid, bobToken, { dark: true });
  });
  after(async () => {
    for (const p of [alice, bob]) if (p) assert.deepEqual(p.errors.map(String), [], 'no page errors');
    await srv?.stop();
  });

  test('the fragment token is removed from the address bar and kept in localStorage', async () => {
    assert.equal(new URL(alice.url()).hash, '');
    assert.equal(await alice.evaluate(() => localStorage.getItem('tandem.token')), aliceToken);
  });

  test('text typed in one Monaco appears in the other and in GET /text', async () => {
    await typeAtEnd(alice, 'function hello() {\n');
    await alice.keyboard.type('return 42;', { delay: 10 });
    const expected = await editorText(alice);
    assert.match(expected, /function hello\(\) \{\n\s*return 42;/);
    await until('Bob sees Alice\'s text', () => editorText(bob), expected);
    await until('GET /text has it', () => getText(srv, aliceToken, sid), expected);
  });

  test('the remote cursor is drawn with the name label', async () => {
    await bob.waitForSelector('.tandem-remote-label:has-text("Alice")', { timeout: 8000 });
    await bob.waitForSelector('.tandem-caret', { timeout: 8000 });
    await typeAtEnd(bob, '\n// Bob was here');
    await alice.waitForSelector('.tandem-remote-label:has-text("Bob")', { timeout: 8000 });
    const color = await alice.evaluate(() => getComputedStyle(document.querySelector('.tandem-remote-label')).backgroundColor);
    assert.notEqual(color, 'rgba(0, 0, 0, 0)', 'the label has the user\'s colour');
  });

  test('a chat message shows on both pages, with the typing indicator before it', async () => {
    await alice.click('#chat-input');
    await alice.keyboard.type('Shall we', { delay: 20 });
    await bob.waitForSelector('#typing:has-text("Alice is typing")', { timeout: 8000 });
    await shot(bob, 'typing-indicator');
    await alice.keyboard.type(' add tests?');
    await alice.click('#chat-form button[type=submit]');
    for (const p of [alice, bob]) await p.waitForSelector('#chat-log li:has-text("Shall we add tests?")', { timeout: 8000 });
    await until('the typing indicator clears', () => bob.textContent('#typing'), '');
  });

  test('participants show role, online state and the file each is in', async () => {
    await alice.waitForSelector('#participants li.online[data-user-id="bob"]');
    const row = await alice.textContent('#participants li[data-user-id="bob"]');
    assert.match(row, /Bob.*editor.*in main\.ts/s);
  });

  test('a file created in one tree appears in the other and opens with its content', async () => {
    await alice.click('#new-file');
    await alice.fill('.modal input[name=path]', 'src/util.ts');
    await alice.click('.modal button[type=submit]');
    await waitForEditor(alice, await fileId(alice, 'src/util.ts'));
    await typeAtEnd(alice, 'export const answer = 42;');
    await bob.waitForSelector('#tree li[data-path="src/util.ts"]', { timeout: 8000 });
    await bob.click('#tree li[data-path="src/util.ts"] .name');
    await waitForEditor(bob, await fileId(bob, 'src/util.ts'));
    await until('Bob opens the file with Alice\'s content', () => editorText(bob), 'export const answer = 42;');
    await shot(alice, 'session-alice');
    await shot(bob, 'session-bob-dark');
    // Back to the main file for the next tests.
    await bob.click('#tabs .tab[data-file-id="main"] .tab-name');
    await waitForEditor(bob, 'main');
  });

  test('follow mode switches file and scrolls with the leader', async () => {
    // A long file, so following has to scroll.
    const long = Array.from({ length: 300 }, (_, i) => `line ${i + 1};`).join('\n');
    const r = await srv.http(`/api/sessions/${sid}/files`, { token: aliceToken, method: 'POST', body: { path: 'long.ts', content: long } });
    assert.equal(r.status, 201);
    const longId = (await r.json()).id;
    await alice.waitForSelector('#tree li[data-path="long.ts"]');
    await bob.click('#participants li[data-user-id="alice"]');
    await bob.waitForSelector('#follow-banner:not([hidden])');
    await alice.click('#tree li[data-path="long.ts"] .name');
    await waitForEditor(alice, longId);
    await waitForEditor(bob, longId);
    // Alice jumps to the end: Bob's editor scrolls there.
    await alice.click('#editor .view-lines');
    await alice.keyboard.press('Control+End');
    await waitFor('Bob\'s view shows line 300', () => bob.evaluate(() => {
      const r = window.__tandem.editor.getVisibleRanges()[0];
      return r && r.endLineNumber >= 300;
    }), 8000);
    await shot(bob, 'follow-mode');
    // Typing stops following.
    await bob.click('#editor .view-lines');
    await bob.waitForSelector('#follow-banner', { state: 'hidden' });
    await bob.click('#tabs .tab[data-file-id="main"] .tab-name');
    await alice.click('#tabs .tab[data-file-id="main"] .tab-name');
    await waitForEditor(alice, 'main');
    await waitForEditor(bob, 'main');
  });

  test('rename, move and delete from the tree reach the other tree; Download gets the workspace', async () => {
    const ask = async (page, value) => {
      await page.fill('.modal input[name=path]', value);
      await page.click('.modal button[type=submit]');
    };
    await bob.hover('#tree li[data-path="src/util.ts"]');
    await bob.click('#tree li[data-path="src/util.ts"] button[data-action=rename]');
    await ask(bob, 'lib/helpers.ts');
    await alice.waitForSelector('#tree li[data-path="lib/helpers.ts"]', { timeout: 8000 });
    await alice.waitForSelector('#tree li[data-path="src/util.ts"]', { state: 'detached' });
    await alice.hover('#tree li[data-path="long.ts"]');
    await alice.click('#tree li[data-path="long.ts"] button[data-action=delete]');
    await alice.click('.modal button[type=submit]');
    await bob.waitForSelector('#tree li[data-path="long.ts"]', { state: 'detached', timeout: 8000 });
    // Bob had it open (follow mode): its tab closes.
    await waitFor('Bob\'s long.ts tab closes', async () => (await bob.locator('#tabs .tab', { hasText: 'long.ts' }).count()) === 0, 8000);
    const [download] = await Promise.all([alice.waitForEvent('download'), alice.click('#download')]);
    const zip = await streamToBuffer(await download.createReadStream());
    assert.equal(zip.subarray(0, 2).toString(), 'PK');
    assert.ok(zip.includes(Buffer.from('lib/helpers.ts')), 'the archive holds the renamed file');
    assert.ok(!zip.includes(Buffer.from('long.ts')), 'and not the deleted one');
  });

  test('undo in one page leaves the other person\'s text alone', async () => {
    const base = await editorText(alice);
    await typeAtEnd(alice, '\nAAA');
    await until('Bob sees AAA', () => editorText(bob), `${base}\nAAA`);
    await typeAtEnd(bob, '\nBBB');
    await until('Alice sees BBB', () => editorText(alice), `${base}\nAAA\nBBB`);
    await alice.click('#editor .view-lines');
    await new Promise((r) => setTimeout(r, 500)); // past the undo grouping window
    await alice.keyboard.press('Control+z');
    await until('Alice\'s undo removed only her AAA', () => editorText(alice), `${base}\nBBB`);
    await until('Bob sees the same', () => editorText(bob), `${base}\nBBB`);
    await alice.keyboard.press('Control+Shift+z');
    await until('redo brings AAA back', () => editorText(bob), `${base}\nAAA\nBBB`);
  });
});

describe('roles and invites', () => {
  let srv, sid, ownerToken;
  before(async () => {
    srv = await startWebServer();
    ownerToken = srv.token('owen', {}, { name: 'Owen' });
    sid = (await createSession(srv, ownerToken, { title: 'Read me', language: 'rust' })).id;
    const r = await srv.http(`/api/sessions/${sid}/files/main/content`, { token: ownerToken, method: 'PUT', body: new TextEncoder().encode('fn main() {}\n'), headers: { 'content-type': 'text/plain' } });
    assert.equal(r.status, 200);
  });
  after(async () => { await srv?.stop(); });

  test('a viewer cannot change the document and sees why', async () => {
    const viewerToken = srv.token('vera', { [sid]: 'viewer' }, { name: 'Vera' });
    const page = await openSession(browser, srv, sid, viewerToken);
    await page.waitForSelector('#readonly-note:not([hidden])');
    await until('the viewer has the text', () => editorText(page), 'fn main() {}\n');
    await page.click('#editor .view-lines');
    await page.keyboard.type('let x = 1;');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await editorText(page), 'fn main() {}\n');
    assert.equal(await docText(page), 'fn main() {}\n');
    assert.equal(await getText(srv, ownerToken, sid), 'fn main() {}\n');
    assert.equal(await page.locator('#new-file').isDisabled(), true);
    await shot(page, 'viewer');
    await page.context().close();
  });

  test('an invite link opened in a fresh context lands in the session with the invite\'s role', async () => {
    // The owner makes the link in the Share dialog.
    const owner = await openSession(browser, srv, sid, ownerToken);
    await owner.click('#share');
    await owner.click('#invite-editor');
    const url = await (await owner.waitForSelector('#invite-url[data-role=editor]')).inputValue();
    assert.match(url, new RegExp(`/s/${sid}#invite=`));
    await shot(owner, 'share');
    await owner.context().close();
    const inviteUrl = url.replace(/^https?:\/\/[^/]+/, srv.url);
    const page = await newPage(browser);
    await page.goto(inviteUrl);
    await page.waitForSelector('#guest-form');
    assert.equal(new URL(page.url()).hash, '', 'the invite is taken out of the address bar');
    await page.fill('#guest-name', 'Ivy');
    await page.click('#guest-form button[type=submit]');
    await waitForEditor(page);
    assert.equal(await page.evaluate(() => window.__tandem.role), 'editor');
    assert.equal(await page.isHidden('#readonly-note'), true);
    await typeAtEnd(page, '// from Ivy');
    await until('the invited editor\'s edit is in GET /text', () => getText(srv, ownerToken, sid), 'fn main() {}\n// from Ivy');
    const s = await (await srv.http(`/api/sessions/${sid}`, { token: ownerToken })).json();
    assert.ok(s.participants.some((p) => p.name === 'Ivy' && p.role === 'editor'), JSON.stringify(s.participants));
    assert.deepEqual(page.errors.map(String), []);
    await page.context().close();
  });
});

describe('server restart', () => {
  test('both pages reconnect by themselves and edits made while the server was down arrive', async () => {
    let srv = await startWebServer();
    try {
      const aliceToken = srv.token('alice', {}, { name: 'Alice' });
      const bobToken = srv.token('bob', {}, { name: 'Bob' });
      const sid = (await createSession(srv, aliceToken)).id;
      await grant(srv, aliceToken, sid, 'bob', 'editor');
      const alice = await openSession(browser, srv, sid, aliceToken);
      const bob = await openSession(browser, srv, sid, bobToken);
      await typeAtEnd(alice, 'before');
      await until('Bob has it', () => editorText(bob), 'before');
      await until('acked', () => alice.getAttribute('#status', 'data-unacked'), '0');

      await srv.kill();
      await alice.waitForSelector('#status[data-status="reconnecting"]', { timeout: 8000 });
      await typeAtEnd(alice, ' while down');
      await waitFor('Alice shows unsynced edits', async () => Number(await alice.getAttribute('#status', 'data-unacked')) > 0, 5000);
      assert.match(await alice.textContent('#status'), /unsynced edit/);
      await shot(alice, 'reconnecting');

      srv = await srv.restart();
      for (const p of [alice, bob]) await p.waitForSelector('#status[data-status="connected"]', { timeout: 15000 });
      await until('Bob gets the edit made while the server was down', () => editorText(bob), 'before while down');
      await until('and it is stored', () => getText(srv, aliceToken, sid), 'before while down');
      await until('nothing left unacked', () => alice.getAttribute('#status', 'data-unacked'), '0');
      await typeAtEnd(bob, '!');
      await until('editing goes on after the restart', () => editorText(alice), 'before while down!');
    } finally {
      await srv.stop();
    }
  });
});
