// The queues page: each task queue of the server's remote tasks (`#[task(queue = ...)]`)
// with its pending and leased attempts and the workers seen polling it, refreshed live.

import { get } from './api.js';
import { el, errorText, note, replace, time } from './dom.js';

const LIVE_MS = 2000;

/** Renders the queues page into `main`; returns what stops its refreshing. */
export function queuesPage(main) {
  const message = el('div', { id: 'queues-message' });
  const body = el('tbody', { id: 'queues-body' });
  const stamp = el('span', { class: 'muted', id: 'queues-time' });
  replace(main,
    el('h1', {}, 'Queues'),
    el('p', { class: 'muted' },
      'Remote tasks wait here for workers. Pending: waiting for a worker (after a restart, ' +
      'also those kept for their previous holder for one heartbeat timeout). Leased: held by ' +
      'a worker. Workers: seen polling or heartbeating in the last 90 seconds.'),
    message,
    el('table', { class: 'queues' },
      el('thead', {}, el('tr', {}, ['Queue', 'Pending', 'Leased', 'Workers'].map((h) => el('th', {}, h)))),
      body),
    el('div', { class: 'below' }, stamp),
  );

  let stopped = false;
  async function load() {
    try {
      const answer = await get('/v1/queues');
      if (stopped) return;
      replace(message);
      replace(body, answer.queues.length ? answer.queues.map(row)
        : el('tr', {}, el('td', { colspan: '4', class: 'muted' },
          'No queues: this server links no remote tasks.')));
      stamp.textContent = `as of ${time(Date.now())}`;
    } catch (e) {
      if (!stopped) replace(message, note('error', errorText(e)));
    }
  }

  function row(queue) {
    return el('tr', { dataset: { queue: queue.name } },
      el('td', {}, queue.name),
      el('td', { class: 'num', dataset: { pending: queue.pending } }, String(queue.pending)),
      el('td', { class: 'num', dataset: { leased: queue.leased } }, String(queue.leased)),
      el('td', { class: 'workers' }, queue.workers.length ? queue.workers.join(', ') : 'none'));
  }

  load();
  const timer = setInterval(() => { if (!document.hidden) load(); }, LIVE_MS);
  return () => { stopped = true; clearInterval(timer); };
}
