// MonacoBinding: one Monaco model ⇄ one Y.Text, written for Tandem instead of
// npm y-monaco (whose import path monaco-editor ≥ 0.56 no longer exports,
// which draws no name labels, and whose undo reverts other people's edits).
//
// - Bind only after the document's first sync: the model takes the Y.Text's
//   content, so nothing is ever doubled.
// - Local edits become Y.Text edits in one transaction whose origin is this
//   binding; remote edits are applied to the model with `applyEdits` (not on
//   Monaco's undo stack), keeping everyone's cursor where it belongs.
// - LF only: the model's EOL is LF and pasted CR/CRLF is normalised.
// - Undo/redo is a Y.UndoManager that tracks only this binding's origin, so
//   it never reverts someone else's text; `installUndoKeys` makes
//   Ctrl/Cmd+Z, Ctrl/Cmd+Shift+Z and Ctrl/Cmd+Y run the shown model's.
// - One editor can show several bound models in turn: only the binding whose
//   model is shown (`setActive`) draws remote cursors and publishes ours.
// - Remote cursors and selections come from awareness (`cursor` holds Yjs
//   relative positions, `user` the name and colour): a coloured caret, a
//   tinted selection and a name label above the caret.
import type * as monaco from 'monaco-esm/editor/editor.api.js';
import * as Y from 'yjs';
import type { Awareness } from 'y-protocols/awareness';
import { applyChanges, deltaToEdits, textColorOn, toLf } from './textops';

type Monaco = typeof monaco;

export interface AwarenessUser { id: string; name: string; color: string }

interface CursorState { anchor: unknown; head: unknown }

interface Label { widget: monaco.editor.IContentWidget; node: HTMLElement; pos: monaco.IPosition | null }

export class MonacoBinding {
  readonly undoManager: Y.UndoManager;
  private applyingRemote = false;
  private decorations: monaco.editor.IEditorDecorationsCollection;
  private labels = new Map<number, Label>();
  private disposables: monaco.IDisposable[] = [];
  private styleEl: HTMLStyleElement;
  private readonly observer: (e: Y.YTextEvent, tr: Y.Transaction) => void;
  private readonly onAwareness: () => void;

  constructor(
    private readonly m: Monaco,
    readonly ytext: Y.Text,
    readonly model: monaco.editor.ITextModel,
    readonly editor: monaco.editor.IStandaloneCodeEditor,
    readonly awareness: Awareness,
  ) {
    const doc = ytext.doc!;
    model.setEOL(m.editor.EndOfLineSequence.LF);
    const text = ytext.toString();
    if (model.getValue() !== text) model.setValue(text);
    this.undoManager = new Y.UndoManager(ytext, { trackedOrigins: new Set([this]), captureTimeout: 400 });
    this.decorations = editor.createDecorationsCollection();
    this.styleEl = document.createElement('style');
    document.head.appendChild(this.styleEl);

    this.observer = (event, tr) => {
      if (tr.origin === this) return;
      this.applyRemote(event);
    };
    ytext.observe(this.observer);

    this.disposables.push(model.onDidChangeContent((e) => {
      if (this.applyingRemote) return;
      doc.transact(() => applyChanges(ytext, e.changes), this);
      // Pasted CR/CRLF was normalised in the Y.Text: bring the model along.
      if (e.changes.some((c) => c.text.includes('\r'))) this.resetModel();
    }));
    this.disposables.push(editor.onDidChangeCursorSelection(() => this.publishCursor()));
    this.onAwareness = () => this.renderRemote();
    awareness.on('change', this.onAwareness);
    this.renderRemote();
    this.publishCursor();
  }

  undo() { if (!this.editor.getOption(this.m.editor.EditorOption.readOnly)) this.undoManager.undo(); }
  redo() { if (!this.editor.getOption(this.m.editor.EditorOption.readOnly)) this.undoManager.redo(); }

  private applyRemote(event: Y.YTextEvent) {
    const edits = deltaToEdits(event.delta);
    if (edits.length === 0) return;
    const model = this.model;
    const ops = edits.map((e) => {
      const start = model.getPositionAt(e.offset);
      const end = model.getPositionAt(e.offset + e.deleteCount);
      return {
        range: new this.m.Range(start.lineNumber, start.column, end.lineNumber, end.column),
        text: e.insert,
        forceMoveMarkers: false,
      };
    });
    this.applyingRemote = true;
    try {
      model.applyEdits(ops);
    } finally {
      this.applyingRemote = false;
    }
    if (model.getValue().length !== this.ytext.length) this.resetModel();
    this.renderRemote();
  }

  /** Makes the model equal to the Y.Text again (keeps the selection). */
  private resetModel() {
    const sel = this.editor.getSelections();
    this.applyingRemote = true;
    try {
      this.model.setValue(toLf(this.ytext.toString()));
    } finally {
      this.applyingRemote = false;
    }
    if (sel) this.editor.setSelections(sel);
  }

  private publishCursor() {
    if (!this.active) return;
    const sel = this.editor.getSelection();
    if (!sel || this.editor.getModel() !== this.model) return;
    const anchor = this.model.getOffsetAt(sel.getSelectionStart());
    const head = this.model.getOffsetAt(sel.getPosition());
    const cursor: CursorState = {
      anchor: Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(this.ytext, anchor)),
      head: Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(this.ytext, head)),
    };
    this.awareness.setLocalStateField('cursor', cursor);
  }

  /** The offset a remote relative position points to now, if any. */
  private absolute(rel: unknown): number | null {
    if (!rel) return null;
    try {
      const abs = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(rel), this.ytext.doc!);
      return abs && abs.type === this.ytext ? abs.index : null;
    } catch {
      return null;
    }
  }

  /** Whether this binding's model is the one the editor shows. */
  setActive(active: boolean) {
    this.active = active;
    if (active) {
      this.decorations = this.editor.createDecorationsCollection();
      this.renderRemote();
      this.publishCursor();
    } else {
      for (const l of this.labels.values()) this.editor.removeContentWidget(l.widget);
      this.labels.clear();
      this.decorations.clear();
      this.styleEl.textContent = '';
    }
  }

  private active = true;

  private renderRemote() {
    if (!this.active || this.editor.getModel() !== this.model) return;
    const m = this.m;
    const decos: monaco.editor.IModelDeltaDecoration[] = [];
    let css = '';
    const seen = new Set<number>();
    for (const [clientId, state] of this.awareness.getStates()) {
      if (clientId === this.awareness.clientID) continue;
      const user = state.user as AwarenessUser | undefined;
      const cursor = state.cursor as CursorState | undefined;
      if (!user || !cursor) continue;
      const anchor = this.absolute(cursor.anchor);
      const head = this.absolute(cursor.head);
      if (anchor === null || head === null) continue;
      seen.add(clientId);
      const color = safeColor(user.color);
      css += `.tandem-sel-${clientId}{background:${color}33}` +
        `.tandem-caret-${clientId}{border-left:2px solid ${color};margin-left:-1px}`;
      const start = this.model.getPositionAt(Math.min(anchor, head));
      const end = this.model.getPositionAt(Math.max(anchor, head));
      const headPos = this.model.getPositionAt(head);
      if (anchor !== head) {
        decos.push({
          range: new m.Range(start.lineNumber, start.column, end.lineNumber, end.column),
          options: { className: `tandem-sel-${clientId}`, stickiness: m.editor.TrackedRangeStickiness.NeverGrowsWhenTypingAtEdges },
        });
      }
      decos.push({
        range: new m.Range(headPos.lineNumber, headPos.column, headPos.lineNumber, headPos.column),
        options: {
          beforeContentClassName: `tandem-caret tandem-caret-${clientId}`,
          stickiness: m.editor.TrackedRangeStickiness.NeverGrowsWhenTypingAtEdges,
          hoverMessage: { value: user.name },
        },
      });
      this.label(clientId, user, headPos, color);
    }
    for (const [id, l] of this.labels) {
      if (!seen.has(id)) { this.editor.removeContentWidget(l.widget); this.labels.delete(id); }
    }
    this.styleEl.textContent = css;
    this.decorations.set(decos);
  }

  private label(clientId: number, user: AwarenessUser, pos: monaco.IPosition, color: string) {
    let l = this.labels.get(clientId);
    if (!l) {
      const node = document.createElement('div');
      node.className = 'tandem-remote-label';
      node.dataset.clientId = String(clientId);
      const m = this.m;
      const entry: Label = {
        node,
        pos,
        widget: {
          getId: () => `tandem.label.${clientId}`,
          getDomNode: () => node,
          getPosition: () => ({
            position: entry.pos,
            preference: [m.editor.ContentWidgetPositionPreference.ABOVE, m.editor.ContentWidgetPositionPreference.BELOW],
          }),
        },
      };
      l = entry;
      this.labels.set(clientId, entry);
      this.editor.addContentWidget(entry.widget);
    }
    l.node.textContent = user.name;
    l.node.style.background = color;
    l.node.style.color = textColorOn(color);
    l.pos = pos;
    this.editor.layoutContentWidget(l.widget);
  }

  /** The offset of a remote client's caret (follow mode), if shown. */
  remoteHead(clientId: number): number | null {
    const state = this.awareness.getStates().get(clientId);
    const cursor = state?.cursor as CursorState | undefined;
    return cursor ? this.absolute(cursor.head) : null;
  }

  destroy() {
    this.ytext.unobserve(this.observer);
    this.awareness.off('change', this.onAwareness);
    this.awareness.setLocalStateField('cursor', null);
    for (const d of this.disposables) d.dispose();
    for (const l of this.labels.values()) this.editor.removeContentWidget(l.widget);
    this.labels.clear();
    this.decorations.clear();
    this.styleEl.remove();
    this.undoManager.destroy();
  }
}

/** Only `#rrggbb`/`hsl(...)`-like colours reach CSS; anything else is grey. */
function safeColor(c: string | undefined): string {
  if (c && /^#[0-9a-fA-F]{6}$/.test(c)) return c;
  return '#888888';
}

/**
 * Ctrl/Cmd+Z, Ctrl/Cmd+Shift+Z and Ctrl/Cmd+Y run the shown binding's
 * UndoManager instead of Monaco's own undo stack (which would also revert
 * other people's edits once they are in the model).
 */
export function installUndoKeys(m: Monaco, editor: monaco.editor.IStandaloneCodeEditor, current: () => MonacoBinding | undefined) {
  const K = m.KeyMod, C = m.KeyCode;
  editor.addCommand(K.CtrlCmd | C.KeyZ, () => current()?.undo());
  editor.addCommand(K.CtrlCmd | K.Shift | C.KeyZ, () => current()?.redo());
  editor.addCommand(K.CtrlCmd | C.KeyY, () => current()?.redo());
}
