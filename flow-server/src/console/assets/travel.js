// Time travel: pick a step and see the run's saved locals as they were when it was
// scheduled, beside what the step asked for and what it returned.

import { get, seg } from './api.js';
import { el, errorText, json, note, replace, time } from './dom.js';

/** What a step asked for, without its policies: a task's arguments, a signal's name... */
function stepInput(request) {
  let op = request;
  const names = [];
  while (op && op.Named) {
    names.push(op.Named.name);
    op = op.Named.op;
  }
  const [kind, body] = op && typeof op === 'object' ? Object.entries(op)[0] || [] : [String(op), null];
  let shown;
  if (kind === 'Task') shown = { task: body.name, args: body.args };
  else if (kind === 'Signal') shown = { signal: body.name, timeout: body.timeout };
  else if (kind === 'Child') shown = { child_workflow: body.workflow, input: body.input };
  else if (kind === 'Sleep') shown = { sleep_until: new Date(body.until_ms).toISOString() };
  else if (kind === 'Callback') shown = { callback: stepInput(body.task) };
  else shown = op;
  return names.length ? { named: names.join(' / '), ...shown } : shown;
}

/**
 * One saved local as a table row: its source name (`x#2` for a second `x`), its type as
 * written, its value, and the slot it is kept in. A local the server cannot name (its
 * workflow's code is not registered there) is shown by its slot alone, never guessed.
 */
function localRow(l) {
  const name = l.name == null
    ? el('td', { class: 'muted', title: 'this server does not register the code that saved it' }, `slot ${l.slot}`)
    : el('td', { class: 'local-name' }, el('code', {}, l.name));
  return el('tr', {},
    name,
    el('td', { class: 'muted' }, l.type == null ? '' : l.type),
    el('td', {}, json(l.value)),
    el('td', { class: 'num muted' }, `#${l.slot}`));
}

/** Most steps offered in the list; any other is reached by its number. */
const LISTED = 2000;

/**
 * The time-travel panel for run `runId` with `count` steps scheduled; `names`: step
 * number → name, as far as the history is loaded. Returns `{node, select(step)}`.
 */
export function travelPanel(runId, count, names) {
  const listed = Math.min(count, LISTED);
  const select = el('select', { id: 'travel-step' },
    Array.from({ length: listed }, (_, step) =>
      el('option', { value: String(step) }, `step ${step}${names.has(step) ? ': ' + names.get(step) : ''}`)));
  const number = el('input', { id: 'travel-number', type: 'number', min: '0', max: String(Math.max(count - 1, 0)), class: 'narrow' });
  const go = el('button', { type: 'button', id: 'travel-go' }, 'Go');
  const view = el('div', { id: 'travel-view' });
  const prev = el('button', { type: 'button', id: 'travel-prev' }, '← earlier');
  const next = el('button', { type: 'button', id: 'travel-next' }, 'later →');
  let current = null;

  async function show(step) {
    if (!(step >= 0 && step < count)) return;
    current = step;
    if (step < listed) select.value = String(step);
    number.value = String(step);
    replace(view, el('p', { class: 'muted' }, 'Loading…'));
    try {
      const at = await get(`/v1/runs/${seg(runId)}/locals?step=${step}`);
      if (current !== step) return;
      const locals = at.locals === null
        ? note('info', 'The journal holds no saved locals for this step (recorded before flow kept step states, or before the run continued as new).')
        : at.locals.length === 0
          ? el('p', { class: 'muted' }, 'No locals were live across this step.')
          : el('table', { class: 'locals', id: 'travel-locals' },
            el('thead', {}, el('tr', {}, el('th', {}, 'local'), el('th', {}, 'type'), el('th', {}, 'value'), el('th', {}, 'slot'))),
            el('tbody', {}, at.locals.map(localRow)));
      const scheduled = at.scheduled;
      const request = scheduled ? stepInput(scheduled.request) : null;
      replace(view,
        el('p', {}, `Step ${at.step} (${at.name || '?'}) at state s${at.state}, scheduled ${scheduled ? time(scheduled.at_ms) : '?'}`,
          at.completed ? `, completed ${time(at.completed.at_ms)}` : ', not completed'),
        el('div', { class: 'three' },
          el('div', {}, el('h3', {}, 'Locals then'), locals),
          el('div', {}, el('h3', {}, 'Step input'), json(request, { id: 'travel-input' })),
          el('div', {}, el('h3', {}, 'Step output'),
            at.completed ? json(at.completed.output, { id: 'travel-output' }) : el('p', { class: 'muted' }, 'pending'))));
    } catch (e) {
      replace(view, note('error', errorText(e)));
    }
  }
  select.addEventListener('change', () => show(Number(select.value)));
  go.addEventListener('click', () => show(Number(number.value)));
  prev.addEventListener('click', () => { if (current > 0) show(current - 1); });
  next.addEventListener('click', () => { if (current !== null && current < count - 1) show(current + 1); });

  const node = el('section', { class: 'panel', id: 'time-travel' },
    el('h2', {}, 'Time travel'),
    el('p', { class: 'muted' }, 'The run\'s saved locals as they were when a step was scheduled, read from the journal: nothing is re-run.'),
    count ? el('div', { class: 'filters' }, el('label', {}, 'Step ', select), prev, next, el('label', {}, 'or number ', number), go)
      : el('p', { class: 'muted' }, 'No steps yet.'),
    view);
  if (count) show(count - 1);
  return { node, select: show };
}
