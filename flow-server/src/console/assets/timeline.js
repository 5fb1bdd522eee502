// A run's history as a timeline: one row per step, its attempts as bars (failures red),
// the back-off waits between them hatched, sleeps, signal and callback waits, and child
// runs as spans from scheduling to completion.

import { duration, el, svg, time } from './dom.js';

const LABEL_W = 190;
const ROW_H = 24;
const WIDTH = 980;

/** The timeline of `events` (oldest first); `now` ends what is still open. */
export function drawTimeline(events, now) {
  const steps = new Map();
  const step = (n) => {
    if (!steps.has(n)) steps.set(n, { step: n, name: `step ${n}`, start: null, end: null, bars: [], open: new Map() });
    return steps.get(n);
  };
  let first = null;
  let last = null;
  let ended = null;
  for (const e of events) {
    first = first === null ? e.at_ms : Math.min(first, e.at_ms);
    last = last === null ? e.at_ms : Math.max(last, e.at_ms);
    switch (e.type) {
      case 'StepScheduled': {
        const s = step(e.step);
        s.name = e.name;
        s.start = e.at_ms;
        s.end = null;
        s.kind = e.name === 'sleep' ? 'sleep' : e.name.startsWith('signal:') ? 'signal' : 'step';
        break;
      }
      case 'AttemptStarted': {
        const s = step(e.step);
        const key = `${e.branch}`;
        const backoff = s.open.get('wait:' + key);
        if (backoff) {
          s.bars.push({ kind: 'backoff', start: backoff.start, end: e.at_ms, label: `back-off before attempt ${e.attempt}` });
          s.open.delete('wait:' + key);
        }
        s.open.set(key, { start: e.at_ms, attempt: e.attempt });
        break;
      }
      case 'AttemptFailed': {
        const s = step(e.step);
        const key = `${e.branch}`;
        const open = s.open.get(key);
        s.bars.push({ kind: 'failed', start: open ? open.start : e.at_ms, end: e.at_ms,
          label: `attempt ${e.attempt} failed: ${e.error}` });
        s.open.delete(key);
        if (e.retry_at_ms) s.open.set('wait:' + key, { start: e.at_ms, until: e.retry_at_ms });
        break;
      }
      case 'BranchCompleted': {
        const s = step(e.step);
        const open = s.open.get(`${e.branch}`);
        if (open) {
          s.bars.push({ kind: 'ok', start: open.start, end: e.at_ms, label: `attempt ${open.attempt} succeeded` });
          s.open.delete(`${e.branch}`);
        }
        break;
      }
      case 'CallbackWaiting': {
        // The task handed out its token: its attempt is over, the wait for the callback begins.
        const s = step(e.step);
        const key = `${e.branch}`;
        const open = s.open.get(key);
        if (open) s.bars.push({ kind: 'ok', start: open.start, end: e.at_ms, label: `attempt ${open.attempt} handed out the callback token` });
        s.open.delete(key);
        s.open.set('callback:' + key, { start: e.at_ms });
        break;
      }
      case 'CallbackCompleted': {
        const s = step(e.step);
        const key = 'callback:' + e.branch;
        const open = s.open.get(key);
        if (open) s.bars.push({ kind: 'signal', start: open.start, end: e.at_ms, label: `waited for the callback (${e.ok ? 'completed' : 'failed'})` });
        s.open.delete(key);
        break;
      }
      case 'StepCompleted': {
        const s = step(e.step);
        for (const [key, open] of s.open) {
          if (key.startsWith('callback:')) {
            s.bars.push({ kind: 'signal', start: open.start, end: e.at_ms, label: 'waited for the callback' });
            continue;
          }
          if (key.startsWith('wait:')) continue;
          s.bars.push({ kind: 'ok', start: open.start, end: e.at_ms, label: `attempt ${open.attempt} succeeded` });
        }
        s.open.clear();
        s.end = e.at_ms;
        break;
      }
      case 'RunCompleted':
      case 'RunFailed':
      case 'RunCancelled':
      case 'RunFaulted':
        ended = e.at_ms;
        break;
      default:
        break;
    }
  }
  if (first === null) return el('p', { class: 'muted' }, 'No events yet.');
  const stop = ended !== null ? Math.max(ended, last) : Math.max(now, last);
  const span = Math.max(stop - first, 1);
  const x = (ms) => LABEL_W + ((ms - first) / span) * (WIDTH - LABEL_W - 10);
  const rows = [...steps.values()].sort((a, b) => a.step - b.step);
  const height = 30 + rows.length * ROW_H;
  const root = svg('svg', { class: 'timeline', id: 'timeline', viewBox: `0 0 ${WIDTH} ${height}`, width: WIDTH, height });
  root.append(svg('text', { x: LABEL_W, y: 14, class: 'axis' }, time(first)),
    svg('text', { x: WIDTH - 10, y: 14, class: 'axis', 'text-anchor': 'end' }, `+${duration(stop - first)}`));
  rows.forEach((s, i) => {
    const y = 24 + i * ROW_H;
    const row = svg('g', { class: 'row', dataset: { step: s.step } });
    row.append(svg('text', { x: 4, y: y + 15, class: 'label' }, `${s.step} ${s.name.length > 26 ? s.name.slice(0, 25) + '…' : s.name}`));
    if (s.start !== null) {
      const end = s.end !== null ? s.end : (ended !== null ? ended : stop);
      const kind = s.kind === 'sleep' ? 'sleep' : s.kind === 'signal' ? 'signal' : 'span';
      const what = kind === 'sleep' ? 'sleeping' : kind === 'signal' ? 'waiting for the signal' : 'scheduled';
      row.append(svg('rect', { x: x(s.start), y: y + 4, width: Math.max(x(end) - x(s.start), 2), height: ROW_H - 8, class: 'bar ' + kind },
        svg('title', {}, `${s.name}: ${what} ${duration(end - s.start)}${s.end === null ? ' (still open)' : ''}`)));
    }
    for (const [key, open] of s.open) {
      if (key.startsWith('wait:')) s.bars.push({ kind: 'backoff', start: open.start, end: Math.max(open.until, open.start), label: `back-off until ${time(open.until)}` });
      else if (key.startsWith('callback:')) s.bars.push({ kind: 'signal', start: open.start, end: stop, label: 'waiting for the callback' });
      else s.bars.push({ kind: 'running', start: open.start, end: stop, label: `attempt ${open.attempt} running` });
    }
    for (const b of s.bars) {
      row.append(svg('rect', { x: x(b.start), y: y + 7, width: Math.max(x(Math.min(b.end, stop)) - x(b.start), 3), height: ROW_H - 14, class: 'bar ' + b.kind },
        svg('title', {}, `${b.label} (${duration(b.end - b.start)})`)));
    }
    root.append(row);
  });
  return el('div', { class: 'timeline-box' }, root,
    el('div', { class: 'legend' },
      ['span', 'ok', 'failed', 'backoff', 'sleep', 'signal', 'running'].map((k) => el('span', { class: 'key ' + k },
        { span: 'step open', ok: 'attempt', failed: 'failed attempt', backoff: 'back-off', sleep: 'sleep', signal: 'signal or callback wait', running: 'attempt running' }[k]))));
}
