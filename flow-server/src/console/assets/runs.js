// The runs page: counts per status, filters (status, workflow, version, creation time),
// search by run ID, a page of runs at a time, refreshed live.

import { ApiError, get, seg } from './api.js';
import { badge, el, errorText, note, replace, time } from './dom.js';

const STATUSES = ['running', 'waiting', 'completed', 'returned_err', 'failed', 'cancelled', 'faulted', 'blocked'];
const PAGE = 50;
const LIVE_MS = 2000;

// Kept across visits, so that coming back from a run shows the same page.
const state = { status: '', workflow: '', version: '', from: '', to: '', cursors: [null], live: true };

/** Renders the runs page into `main`; returns what stops its refreshing. */
export function runsPage(main) {
  const countsBox = el('div', { class: 'counts', id: 'counts' });
  const statusSelect = el('select', { id: 'filter-status' },
    el('option', { value: '' }, 'any status'), STATUSES.map((s) => el('option', { value: s }, s)));
  const workflowSelect = el('select', { id: 'filter-workflow' }, el('option', { value: '' }, 'any workflow'));
  const versionInput = el('input', { id: 'filter-version', type: 'number', min: '1', placeholder: 'any', class: 'narrow' });
  const fromInput = el('input', { id: 'filter-from', type: 'datetime-local', step: '1' });
  const toInput = el('input', { id: 'filter-to', type: 'datetime-local', step: '1' });
  const searchInput = el('input', { id: 'search-run', type: 'search', placeholder: 'run ID', spellcheck: 'false' });
  const liveBox = el('input', { id: 'live', type: 'checkbox' });
  const message = el('div', { id: 'runs-message' });
  const body = el('tbody', { id: 'runs-body' });
  const pager = el('div', { class: 'pager' });
  const timing = el('span', { class: 'muted', id: 'runs-timing' });

  statusSelect.value = state.status;
  versionInput.value = state.version;
  fromInput.value = state.from;
  toInput.value = state.to;
  liveBox.checked = state.live;

  const apply = () => {
    state.status = statusSelect.value;
    state.workflow = workflowSelect.value;
    state.version = versionInput.value;
    state.from = fromInput.value;
    state.to = toInput.value;
    state.cursors = [null];
    load();
  };
  const search = async () => {
    const id = searchInput.value;
    if (!id) return;
    try {
      await get('/v1/runs/' + seg(id));
      location.hash = '#/runs/' + seg(id);
    } catch (e) {
      replace(message, note('error', e instanceof ApiError && e.status === 404
        ? `No run with the ID “${id}”.` : errorText(e)));
    }
  };

  replace(main,
    el('h1', {}, 'Runs'),
    countsBox,
    el('form', { class: 'filters', on: { submit: (e) => { e.preventDefault(); apply(); } } },
      el('label', {}, 'Status ', statusSelect),
      el('label', {}, 'Workflow ', workflowSelect),
      el('label', {}, 'Version ', versionInput),
      el('label', {}, 'Created from ', fromInput),
      el('label', {}, 'to ', toInput),
      el('button', { type: 'submit', id: 'filter-apply' }, 'Filter'),
      el('span', { class: 'spacer' }),
      el('label', {}, liveBox, ' live'),
    ),
    el('form', { class: 'filters', on: { submit: (e) => { e.preventDefault(); search(); } } },
      el('label', {}, 'Find run ', searchInput),
      el('button', { type: 'submit', id: 'search-open' }, 'Open'),
    ),
    message,
    el('table', { class: 'runs' },
      el('thead', {}, el('tr', {}, ['Run ID', 'Workflow', 'Version', 'Status', 'Steps', 'Created', 'Updated', 'Reason']
        .map((h) => el('th', {}, h)))),
      body),
    el('div', { class: 'below' }, pager, timing),
  );

  statusSelect.addEventListener('change', apply);
  workflowSelect.addEventListener('change', apply);
  liveBox.addEventListener('change', () => { state.live = liveBox.checked; });

  get('/v1/workflows').then((answer) => {
    const names = [...new Set(answer.workflows.map((w) => w.name))].sort();
    workflowSelect.append(...names.map((n) => el('option', { value: n }, n)));
    workflowSelect.value = state.workflow;
  }).catch(() => {});

  let stopped = false;
  let loading = false;

  async function load() {
    if (loading) return;
    loading = true;
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (state.status) params.set('status', state.status);
    if (state.workflow) params.set('workflow', state.workflow);
    if (state.version) params.set('version', state.version);
    if (state.from) params.set('created_after_ms', String(new Date(state.from).getTime()));
    if (state.to) params.set('created_before_ms', String(new Date(state.to).getTime()));
    const cursor = state.cursors[state.cursors.length - 1];
    if (cursor !== null) params.set('after', cursor);
    const started = performance.now();
    try {
      const page = await get('/v1/runs?' + params);
      if (stopped) return;
      timing.textContent = `page loaded in ${Math.round(performance.now() - started)} ms`;
      replace(message);
      replace(body, page.runs.length ? page.runs.map(row)
        : el('tr', {}, el('td', { colspan: '8', class: 'muted' }, 'No runs match.')));
      renderPager(page.next);
    } catch (e) {
      if (!stopped) replace(message, note('error', errorText(e)));
    } finally {
      loading = false;
    }
    loadCounts();
  }

  async function loadCounts() {
    try {
      const answer = await get('/v1/run_counts');
      if (stopped) return;
      const counts = answer.counts;
      if (!counts) {
        replace(countsBox, el('span', { class: 'muted' }, 'counting runs…'));
        return;
      }
      const of = state.workflow ? (counts.by_workflow[state.workflow] || {}) : counts.total;
      const all = STATUSES.reduce((n, s) => n + (of[s] || 0), 0);
      const chip = (status, n, label) => el('button', {
        type: 'button',
        class: 'chip' + (state.status === status ? ' selected' : '') + (status ? ' status-' + status : ''),
        dataset: { status, count: n },
        on: { click: () => { statusSelect.value = status; apply(); } },
      }, `${label} ${n}`);
      replace(countsBox,
        chip('', all, state.workflow ? `all ${state.workflow}` : 'all'),
        STATUSES.filter((s) => of[s]).map((s) => chip(s, of[s], s)),
        el('span', { class: 'muted' }, ` counted ${time(counts.as_of_ms)}`));
    } catch (_) {
      // The page's own error says enough.
    }
  }

  function row(run) {
    return el('tr', { dataset: { runId: run.run_id } },
      el('td', {}, el('a', { class: 'run-link', href: '#/runs/' + seg(run.run_id) }, run.run_id)),
      el('td', {}, run.workflow),
      el('td', {}, String(run.version)),
      el('td', {}, badge(run.status)),
      el('td', { class: 'num' }, String(run.steps)),
      el('td', {}, time(run.created_at_ms)),
      el('td', {}, time(run.updated_at_ms)),
      el('td', { class: 'reason' }, run.reason || ''));
  }

  function renderPager(next) {
    const first = el('button', { type: 'button', id: 'page-first', disabled: state.cursors.length === 1 },
      'First page');
    first.addEventListener('click', () => { state.cursors = [null]; load(); });
    const back = el('button', { type: 'button', id: 'page-prev', disabled: state.cursors.length === 1 }, '← Previous');
    back.addEventListener('click', () => { state.cursors.pop(); load(); });
    const forward = el('button', { type: 'button', id: 'page-next', disabled: next === null }, 'Next →');
    forward.addEventListener('click', () => { state.cursors.push(next); load(); });
    replace(pager, first, back, el('span', { class: 'muted' }, `page ${state.cursors.length}`), forward);
  }

  load();
  const timer = setInterval(() => { if (state.live && !document.hidden) load(); }, LIVE_MS);
  return () => { stopped = true; clearInterval(timer); };
}
