// Building the page. Every value from the journal goes in as text (`textContent`, text
// nodes, attribute values): nothing here parses data as HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') node.textContent = String(value);
    else if (key === 'on') for (const [event, f] of Object.entries(value)) node.addEventListener(event, f);
    else if (key === 'dataset') for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: `el('a', {href, class, text, on: {click}}, ...children)`. */
export function el(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, like `el`. */
export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Removes every child of `node` and appends `children`. */
export function replace(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
  return node;
}

/** `ms` since the Unix epoch as a local date and time with milliseconds. */
export function time(ms) {
  if (ms === null || ms === undefined) return '';
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A duration in milliseconds, short: `850 ms`, `12.3 s`, `4 min 2 s`, `3 h 5 min`. */
export function duration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3600000) return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
  return `${Math.floor(ms / 3600000)} h ${Math.round((ms % 3600000) / 60000)} min`;
}

/** A JSON value pretty-printed in a `<pre>`. */
export function json(value, attrs) {
  return el('pre', Object.assign({ class: 'json' }, attrs || {}), JSON.stringify(value, null, 2));
}

/** A run status as a coloured badge. */
export function badge(status, attrs) {
  return el('span', Object.assign({ class: 'badge status-' + status, dataset: { status } }, attrs || {}), status);
}

/** A message in a box: `kind` is `error`, `ok` or `info`. */
export function note(kind, text) {
  return el('div', { class: 'note note-' + kind, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** The text an error shows: the API's code and message. */
export function errorText(e) {
  return e && e.code ? `${e.message} (${e.status} ${e.code})` : String(e);
}

/** Whether a run in `status` will not move by itself. */
export function finished(status) {
  return ['completed', 'returned_err', 'failed', 'cancelled', 'faulted'].includes(status);
}
