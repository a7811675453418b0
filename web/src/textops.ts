// Pure text helpers shared by the Monaco binding (no Monaco, no DOM):
// unit-tested in test/textops.test.ts.
import type * as Y from 'yjs';

/** An edit in the coordinates of the text *before* any edit of its batch. */
export interface Edit { offset: number; deleteCount: number; insert: string }

/** Monaco-style change: a range in the old text replaced by `text`. */
export interface Change { rangeOffset: number; rangeLength: number; text: string }

/** The document holds LF only: CRLF and lone CR become LF. */
export function toLf(s: string): string {
  return s.includes('\r') ? s.replace(/\r\n?/g, '\n') : s;
}

/**
 * A Y.Text delta as edits against the text before the transaction. Offsets
 * are UTF-16 code units, as in both Yjs (JS) and Monaco.
 */
export function deltaToEdits(delta: Y.YTextEvent['delta']): Edit[] {
  const edits: Edit[] = [];
  let offset = 0; // position in the old text
  // Deletes and inserts that touch (no retain between them) are one
  // replacement: two edits at one offset would be ambiguous to apply.
  const at = (): Edit => {
    const last = edits[edits.length - 1];
    if (last && last.offset + last.deleteCount === offset) return last;
    const e = { offset, deleteCount: 0, insert: '' };
    edits.push(e);
    return e;
  };
  for (const op of delta) {
    if (op.retain !== undefined) {
      offset += op.retain;
    } else if (op.delete !== undefined) {
      at().deleteCount += op.delete;
      offset += op.delete;
    } else if (op.insert !== undefined) {
      at().insert += typeof op.insert === 'string' ? op.insert : '';
    }
  }
  return edits;
}

/**
 * Applies Monaco content changes (each against the text before the event,
 * as Monaco reports them) to a Y.Text, last offset first so earlier offsets
 * stay valid. Inserted text is normalised to LF.
 */
export function applyChanges(ytext: Y.Text, changes: readonly Change[]): void {
  const sorted = [...changes].sort((a, b) => b.rangeOffset - a.rangeOffset);
  for (const c of sorted) {
    if (c.rangeLength > 0) ytext.delete(c.rangeOffset, c.rangeLength);
    const text = toLf(c.text);
    if (text.length > 0) ytext.insert(c.rangeOffset, text);
  }
}

/** Applies edits (in old-text coordinates) to a string: the reference for tests. */
export function applyEdits(s: string, edits: readonly Edit[]): string {
  let out = s;
  for (const e of [...edits].sort((a, b) => b.offset - a.offset)) {
    out = out.slice(0, e.offset) + e.insert + out.slice(e.offset + e.deleteCount);
  }
  return out;
}

/** A readable colour for text on top of `hex` (name labels). */
export function textColorOn(hex: string): string {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!m) return '#fff';
  const [r, g, b] = [m[1], m[2], m[3]].map((x) => parseInt(x, 16) / 255);
  const lum = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return lum > 0.6 ? '#111' : '#fff';
}

/** A stable colour for a user id (when the server gave none). */
export function colorFor(id: string): string {
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) >>> 0;
  return `hsl(${h % 360} 70% 45%)`;
}
