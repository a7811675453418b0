// A few DOM helpers (no framework: the pages are small).

type Attrs = Record<string, string | number | boolean | null | undefined | ((e: Event) => void)>;
type Child = Node | string | null | undefined | false;

/** `h('button', { class: 'x', onclick: f }, 'Label')`. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v as EventListener);
    else if (k === 'class') el.className = String(v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

export function clear(el: Element) { while (el.firstChild) el.firstChild.remove(); }

/** A modal form; resolves with the field values, or null when cancelled. */
export function ask(title: string, fields: Array<{ name: string; label: string; value?: string; options?: string[] }>, ok = 'OK'): Promise<Record<string, string> | null> {
  return new Promise((resolve) => {
    const inputs = fields.map((f) => {
      const input = f.options
        ? h('select', { name: f.name }, ...f.options.map((o) => h('option', { value: o, selected: o === f.value }, o)))
        : h('input', { name: f.name, value: f.value ?? '', autocomplete: 'off' });
      return { f, input, row: h('label', {}, h('span', {}, f.label), input) };
    });
    const done = (v: Record<string, string> | null) => { overlay.remove(); resolve(v); };
    const form = h('form', { class: 'modal', role: 'dialog', 'aria-label': title },
      h('h2', {}, title),
      ...inputs.map((i) => i.row),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', onclick: () => done(null) }, 'Cancel'),
        h('button', { type: 'submit' }, ok)));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      done(Object.fromEntries(inputs.map((i) => [i.f.name, (i.input as HTMLInputElement).value])));
    });
    form.addEventListener('keydown', (e) => { if ((e as KeyboardEvent).key === 'Escape') done(null); });
    const overlay = h('div', { class: 'overlay' }, form);
    document.body.append(overlay);
    (inputs[0]?.input as HTMLInputElement | undefined)?.focus();
    (inputs[0]?.input as HTMLInputElement | undefined)?.select?.();
  });
}

/** A short message at the bottom of the page. */
export function toast(text: string, kind: 'info' | 'error' = 'info') {
  let box = document.querySelector('.toasts');
  if (!box) { box = h('div', { class: 'toasts', 'aria-live': 'polite' }); document.body.append(box); }
  const t = h('div', { class: `toast ${kind}` }, text);
  box.append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 6000 : 3000);
}

export function timeAgo(iso: string): string {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}
