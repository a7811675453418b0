// The binding's text operations against Yjs itself: random edits, deltas
// replayed onto a plain string, Monaco-style batches applied to a Y.Text.
import { describe, expect, test } from 'vitest';
import * as Y from 'yjs';
// @ts-expect-error plain JS helper shared with tests/node (seeded PRNG)
import { rng } from '../../tests/node/test/harness.js';
import { applyChanges, applyEdits, deltaToEdits, textColorOn, toLf, type Change } from '../src/textops';

describe('deltaToEdits', () => {
  test('a remote transaction replayed as edits gives the remote text (500 random transactions)', () => {
    const r = rng(7);
    const a = new Y.Doc();
    const b = new Y.Doc();
    const ta = a.getText('monaco');
    const tb = b.getText('monaco');
    let mirror = '';
    tb.observe((e) => { mirror = applyEdits(mirror, deltaToEdits(e.delta)); });
    a.on('update', (u: Uint8Array) => Y.applyUpdate(b, u));
    for (let i = 0; i < 500; i++) {
      a.transact(() => {
        for (let k = 0; k < 1 + Math.floor(r() * 4); k++) {
          if (ta.length > 0 && r() < 0.4) {
            const at = Math.floor(r() * ta.length);
            ta.delete(at, Math.min(ta.length - at, 1 + Math.floor(r() * 5)));
          } else {
            ta.insert(Math.floor(r() * (ta.length + 1)), ['x', 'yz', '\n', 'é', 'abc'][Math.floor(r() * 5)]);
          }
        }
      });
      expect(mirror).toBe(tb.toString());
    }
    expect(mirror).toBe(ta.toString());
  });

  test('a delete followed by an insert is one replacement', () => {
    expect(deltaToEdits([{ retain: 2 }, { delete: 3 }, { insert: 'XY' }])).toEqual([{ offset: 2, deleteCount: 3, insert: 'XY' }]);
  });
});

describe('applyChanges', () => {
  test('a multi-cursor batch (offsets against the old text) lands where Monaco put it', () => {
    const doc = new Y.Doc();
    const t = doc.getText('monaco');
    t.insert(0, 'a\nb\nc\n');
    const changes: Change[] = [
      { rangeOffset: 0, rangeLength: 0, text: '// ' },
      { rangeOffset: 2, rangeLength: 0, text: '// ' },
      { rangeOffset: 4, rangeLength: 1, text: 'C' },
    ];
    doc.transact(() => applyChanges(t, changes));
    expect(t.toString()).toBe('// a\n// b\nC\n');
  });

  test('pasted CRLF and lone CR become LF', () => {
    const doc = new Y.Doc();
    const t = doc.getText('monaco');
    applyChanges(t, [{ rangeOffset: 0, rangeLength: 0, text: 'one\r\ntwo\rthree\n' }]);
    expect(t.toString()).toBe('one\ntwo\nthree\n');
    expect(toLf('x\r\n')).toBe('x\n');
  });

  test('UTF-16 offsets: surrogate pairs count twice, as in Monaco', () => {
    const doc = new Y.Doc();
    const t = doc.getText('monaco');
    t.insert(0, '😀b');
    applyChanges(t, [{ rangeOffset: 2, rangeLength: 1, text: 'c' }]);
    expect(t.toString()).toBe('😀c');
  });
});

test('label text is readable on light and dark colours', () => {
  expect(textColorOn('#ffff00')).toBe('#111');
  expect(textColorOn('#000080')).toBe('#fff');
  expect(textColorOn('not a colour')).toBe('#fff');
});
