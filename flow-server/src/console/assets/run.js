// A run's page: status, input and output, the pending step, the state graph, the
// history as a timeline and a table (paged), child and parent runs, the signal inbox,
// actions and time travel. Refreshed while the run is not finished.

import { ApiError, get, seg } from './api.js';
import { actionsPanel } from './actions.js';
import { badge, duration, el, errorText, finished, json, note, replace, time } from './dom.js';
import { drawGraph } from './graph.js';
import { drawTimeline } from './timeline.js';
import { travelPanel } from './travel.js';

const HISTORY_PAGE = 500;
const LIVE_MS = 1500;

/** Renders run `runId`'s page into `main`; returns what stops its refreshing. */
export function runPage(main, runId) {
  let stopped = false;
  let timer = null;
  const page = { run: null, events: [], next: null, loaded: false };

  const header = el('div', { id: 'run-header' });
  const summary = el('div', { id: 'run-summary' });
  const graphBox = el('div', { class: 'graph-box', id: 'graph-box' });
  const timelineBox = el('div', { id: 'timeline-box' });
  const historyBody = el('tbody', { id: 'history-body' });
  const historyMore = el('div', { class: 'below', id: 'history-more' });
  const related = el('div', { id: 'related' });
  const actionsBox = el('div', { id: 'actions-box' });
  const travelBox = el('div', { id: 'travel-box' });
  let travel = null;

  replace(main,
    el('p', {}, el('a', { href: '#/' }, '← Runs')),
    header, summary, actionsBox,
    el('section', { class: 'panel', id: 'graph-section' }, el('h2', {}, 'State graph'), graphBox),
    el('section', { class: 'panel', id: 'timeline-section' }, el('h2', {}, 'Timeline'), timelineBox),
    related,
    travelBox,
    el('section', { class: 'panel' }, el('h2', {}, 'History'),
      el('table', { class: 'history' },
        el('thead', {}, el('tr', {}, ['seq', 'time', 'event', 'details'].map((h) => el('th', {}, h)))),
        historyBody),
      historyMore));

  async function loadHistory(after) {
    const params = new URLSearchParams({ limit: String(HISTORY_PAGE) });
    if (after !== null && after !== undefined) params.set('after', String(after));
    const answer = await get(`/v1/runs/${seg(runId)}/history?${params}`);
    page.events.push(...answer.events);
    page.next = answer.next;
    historyBody.append(...answer.events.map(historyRow));
    renderMore();
    return answer;
  }

  function renderMore() {
    if (page.next === null) {
      replace(historyMore, el('span', { class: 'muted' }, `${page.events.length} events`));
      return;
    }
    const more = el('button', { type: 'button', id: 'history-load-more' }, `Load ${HISTORY_PAGE} more`);
    more.addEventListener('click', async () => {
      more.disabled = true;
      try {
        await loadHistory(page.next);
        renderDerived();
      } catch (e) {
        replace(historyMore, note('error', errorText(e)));
      }
    });
    replace(historyMore, el('span', { class: 'muted' }, `${page.events.length} events loaded; more follow `), more);
  }

  function historyRow(e) {
    const details = Object.fromEntries(Object.entries(e).filter(([k]) => !['seq', 'at_ms', 'type'].includes(k)));
    const failed = ['AttemptFailed', 'RunFailed', 'RunFaulted', 'MapFailed'].includes(e.type);
    const row = el('tr', { class: failed ? 'failed' : '', dataset: { seq: e.seq, type: e.type } },
      el('td', { class: 'num' }, String(e.seq)),
      el('td', {}, time(e.at_ms)),
      el('td', {}, e.type),
      el('td', {}, Object.keys(details).length ? el('code', {}, JSON.stringify(details)) : ''));
    if (e.type === 'StepScheduled' || e.type === 'StepCompleted') {
      row.classList.add('clickable');
      row.title = 'Show this step in time travel';
      row.addEventListener('click', () => {
        if (travel) {
          travel.select(e.step);
          document.getElementById('time-travel').scrollIntoView();
        }
      });
    }
    return row;
  }

  function renderHeader(run) {
    replace(header,
      el('h1', {}, el('span', { id: 'run-id' }, run.run_id), ' ', badge(run.status, { id: 'run-status' })),
      run.reason ? note('error', run.reason) : null);
    const pending = run.pending;
    const rows = [
      ['Workflow', `${run.workflow} (version ${run.version})`],
      ['Created', time(run.created_at_ms)],
      ['Updated', time(run.updated_at_ms)],
      ['Steps', String(run.steps)],
    ];
    replace(summary,
      el('section', { class: 'panel two' },
        el('div', {},
          el('table', { class: 'facts' }, el('tbody', {}, rows.map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, v))))),
          pending ? el('div', { class: 'pending', id: 'pending' },
            el('h3', {}, 'Pending step'),
            el('table', { class: 'facts' }, el('tbody', {},
              el('tr', {}, el('th', {}, 'Step'), el('td', {}, `${pending.step}: ${pending.name}`)),
              el('tr', {}, el('th', {}, 'Since'), el('td', {}, `${time(pending.scheduled_at_ms)} (${duration(Date.now() - pending.scheduled_at_ms)} ago)`)),
              el('tr', {}, el('th', {}, 'Attempt'), el('td', {}, pending.attempt === null ? 'none yet' : String(pending.attempt))),
              pending.last_error !== null ? el('tr', { class: 'failed' }, el('th', {}, 'Last error'), el('td', {}, pending.last_error)) : null,
              pending.retry_at_ms !== null ? el('tr', {}, el('th', {}, 'Next retry'), el('td', {}, time(pending.retry_at_ms))) : null)))
            : null),
        el('div', {},
          el('h3', {}, 'Input'), json(run.input, { id: 'run-input' }),
          el('h3', {}, 'Output'), json(run.output, { id: 'run-output' }))));
  }

  function renderDerived() {
    const run = page.run;
    replace(timelineBox, drawTimeline(page.events, Date.now()),
      page.next !== null ? el('p', { class: 'muted' }, `The timeline shows the ${page.events.length} events loaded; load more below.`) : null);
    // Parent and children, from the events loaded.
    const started = page.events.find((e) => e.type === 'RunStarted');
    const children = [];
    for (const e of page.events) {
      if (e.type !== 'StepScheduled') continue;
      let request = e.request;
      while (request && request.Named) request = request.Named.op;
      if (request && request.Child) children.push({ id: `${runId}/${e.step}`, workflow: request.Child.workflow });
      const items = request && (request.All || (request.Map && request.Map.items) || (request.Batch && request.Batch.items));
      if (Array.isArray(items)) {
        items.forEach((item, i) => {
          let op = item;
          while (op && op.Named) op = op.Named.op;
          if (op && op.Child) children.push({ id: `${runId}/${e.step}.${i}`, workflow: op.Child.workflow });
        });
      }
    }
    const signals = page.events.filter((e) => e.type === 'SignalReceived');
    const link = (id) => el('a', { href: '#/runs/' + seg(id), class: 'run-link' }, id);
    replace(related, el('section', { class: 'panel two', id: 'relations' },
      el('div', {},
        el('h2', {}, 'Related runs'),
        started && started.parent ? el('p', { id: 'parent-run' }, 'Parent: ', link(started.parent)) : el('p', { class: 'muted' }, 'No parent run.'),
        children.length ? el('ul', { id: 'child-runs' }, children.map((c) => el('li', {}, link(c.id), ` (${c.workflow})`)))
          : el('p', { class: 'muted' }, 'No child runs.')),
      el('div', {},
        el('h2', {}, 'Signal inbox'),
        signals.length ? el('table', { class: 'facts', id: 'signal-inbox' }, el('tbody', {},
          signals.map((s) => el('tr', {}, el('th', {}, s.name), el('td', {}, `#${s.inbox_seq}, received ${time(s.at_ms)}`)))))
          : el('p', { class: 'muted' }, 'No signals received.'))));
  }

  async function renderGraph(run) {
    try {
      const graph = await get(`/v1/runs/${seg(runId)}/graph`);
      // The states the loaded history scheduled steps at, in order.
      const path = page.events.filter((e) => e.type === 'StepScheduled').map((e) => 's' + e.state);
      if (!stopped) replace(graphBox, drawGraph(graph, finished(run.status), path));
    } catch (e) {
      if (!stopped) replace(graphBox, note('info', 'No graph: ' + errorText(e)));
    }
  }

  async function signalNames(run) {
    try {
      const answer = await get('/v1/workflows');
      const w = answer.workflows.find((x) => x.name === run.workflow && x.version === run.version);
      return w ? w.signals.map((s) => s.name) : [];
    } catch (_) {
      return [];
    }
  }

  function stepNames() {
    const names = new Map();
    for (const e of page.events) if (e.type === 'StepScheduled') names.set(e.step, e.name);
    return names;
  }

  async function load() {
    try {
      const run = await get(`/v1/runs/${seg(runId)}`);
      if (stopped) return;
      page.run = run;
      renderHeader(run);
      await loadHistory(null);
      renderDerived();
      await renderGraph(run);
      replace(actionsBox, actionsPanel(run, await signalNames(run), refresh));
      travel = travelPanel(runId, run.steps, stepNames());
      travel.count = run.steps;
      replace(travelBox, travel.node);
      page.loaded = true;
      schedule();
    } catch (e) {
      if (stopped) return;
      replace(main, el('p', {}, el('a', { href: '#/' }, '← Runs')),
        note('error', e instanceof ApiError && e.status === 404 ? `No run with the ID “${runId}”.` : errorText(e)));
    }
  }

  async function refresh() {
    if (stopped || !page.loaded) return;
    try {
      const run = await get(`/v1/runs/${seg(runId)}`);
      if (stopped) return;
      const moved = run.updated_at_ms !== page.run.updated_at_ms || run.status !== page.run.status;
      const statusChanged = run.status !== page.run.status;
      page.run = run;
      if (!moved) return;
      renderHeader(run);
      if (page.next === null) {
        const last = page.events.length ? page.events[page.events.length - 1].seq : null;
        await loadHistory(last);
      }
      renderDerived();
      await renderGraph(run);
      if (statusChanged) replace(actionsBox, actionsPanel(run, await signalNames(run), refresh));
      if (run.steps !== (travel ? travel.count : -1)) {
        travel = travelPanel(runId, run.steps, stepNames());
        travel.count = run.steps;
        replace(travelBox, travel.node);
      }
    } catch (_) {
      // Shown again at the next refresh; the page keeps what it has.
    }
  }

  function schedule() {
    if (stopped) return;
    timer = setTimeout(async () => {
      if (!document.hidden) await refresh();
      schedule();
    }, LIVE_MS);
  }

  load();
  return () => { stopped = true; clearTimeout(timer); };
}
