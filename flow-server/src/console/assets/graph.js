// A workflow's state graph as SVG, laid out in layers: each state sits one layer below
// the deepest state that leads to it (loops' back edges left out of that count and
// drawn as arcs on the side). The run's visited states and the edges between them are
// marked, and the state it waits at is lit.

import { svg } from './dom.js';

const NODE_W = 176;
const NODE_H = 40;
const GAP_X = 28;
const GAP_Y = 46;
const MARGIN = 24;
/** Room on the left for edges that skip layers. */
const LEFT = 90;

/**
 * The SVG of `graph` (`GET /v1/runs/{id}/graph`); `ended`: whether the run finished;
 * `path`: the states its steps were scheduled at, in order (`s0`, `s1`, ...), whose
 * consecutive pairs are the edges marked taken.
 */
export function drawGraph(graph, ended, path) {
  const ids = ['start', ...graph.states.map((s) => s.id), 'end'];
  const info = new Map(graph.states.map((s) => [s.id, s]));
  const out = new Map(ids.map((id) => [id, []]));
  for (const [from, to] of graph.transitions) if (out.has(from) && out.has(to)) out.get(from).push(to);

  // Back edges: those that close a cycle in a depth-first walk from the start.
  const back = new Set();
  const seen = new Set();
  const onStack = new Set();
  const walk = (id) => {
    seen.add(id);
    onStack.add(id);
    for (const to of out.get(id)) {
      if (onStack.has(to)) back.add(from2(id, to));
      else if (!seen.has(to)) walk(to);
    }
    onStack.delete(id);
  };
  walk('start');
  ids.forEach((id) => { if (!seen.has(id)) walk(id); });

  // Longest-path layers over the forward edges (Kahn's order).
  const indegree = new Map(ids.map((id) => [id, 0]));
  for (const id of ids) for (const to of out.get(id)) if (!back.has(from2(id, to))) indegree.set(to, indegree.get(to) + 1);
  const layer = new Map(ids.map((id) => [id, 0]));
  const queue = ids.filter((id) => indegree.get(id) === 0);
  while (queue.length) {
    const id = queue.shift();
    for (const to of out.get(id)) {
      if (back.has(from2(id, to))) continue;
      layer.set(to, Math.max(layer.get(to), layer.get(id) + 1));
      indegree.set(to, indegree.get(to) - 1);
      if (indegree.get(to) === 0) queue.push(to);
    }
  }
  const deepest = Math.max(...ids.filter((id) => id !== 'end').map((id) => layer.get(id)));
  layer.set('end', Math.max(layer.get('end'), deepest + 1));

  const layers = [];
  for (const id of ids) (layers[layer.get(id)] = layers[layer.get(id)] || []).push(id);
  const widest = Math.max(...layers.map((l) => (l ? l.length : 0)));
  const width = LEFT + MARGIN * 2 + widest * NODE_W + (widest - 1) * GAP_X + 60;
  const pos = new Map();
  layers.forEach((row, depth) => {
    if (!row) return;
    const rowWidth = row.length * NODE_W + (row.length - 1) * GAP_X;
    const left = LEFT + (width - LEFT - 60 - rowWidth) / 2;
    row.forEach((id, i) => pos.set(id, { x: left + i * (NODE_W + GAP_X), y: MARGIN + depth * (NODE_H + GAP_Y) }));
  });
  const height = MARGIN * 2 + layers.length * (NODE_H + GAP_Y) - GAP_Y;

  const route = ['start', ...(path || []), ...(ended ? ['end'] : [])];
  const takenEdges = new Set();
  for (let i = 1; i < route.length; i++) takenEdges.add(from2(route[i - 1], route[i]));
  const visited = (id) => id === 'start' || (id === 'end' ? ended : info.get(id) && info.get(id).visited);
  const root = svg('svg', {
    class: 'graph', id: 'state-graph', viewBox: `0 0 ${width} ${height}`, width, height,
    role: 'img', 'aria-label': `state graph of ${graph.workflow} version ${graph.version}`,
  });
  root.append(svg('defs', {},
    svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: '9', refY: '5', markerWidth: '9', markerHeight: '9', markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' },
      svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead' }))));

  // Taken edges are drawn last, over the others.
  const edges = [];
  const takenPaths = [];
  let skips = 0;
  ids.forEach((from) => out.get(from).forEach((to, k) => {
    const a = pos.get(from);
    const b = pos.get(to);
    const taken = takenEdges.has(from2(from, to));
    let d;
    if (from === to) {
      // A loop around one state: an arc on its right side.
      const x = a.x + NODE_W;
      d = `M ${x} ${a.y + 8} C ${x + 46} ${a.y - 14}, ${x + 46} ${a.y + NODE_H + 14}, ${x} ${a.y + NODE_H - 8}`;
    } else if (back.has(from2(from, to)) || layer.get(to) <= layer.get(from)) {
      // Up the right side and back in.
      const x = Math.max(a.x, b.x) + NODE_W + 18 + 10 * k;
      d = `M ${a.x + NODE_W} ${a.y + NODE_H / 2} C ${x} ${a.y + NODE_H / 2}, ${x} ${b.y + NODE_H / 2}, ${b.x + NODE_W} ${b.y + NODE_H / 2}`;
    } else if (layer.get(to) - layer.get(from) > 1) {
      // Past the layers between: bowed out to the left of them.
      skips += 1;
      const x1 = a.x + NODE_W / 2 - 16;
      const x2 = b.x + NODE_W / 2 - 16;
      let leftmost = Math.min(a.x, b.x);
      for (const [id, p] of pos) {
        if (layer.get(id) > layer.get(from) && layer.get(id) < layer.get(to)) leftmost = Math.min(leftmost, p.x);
      }
      const out = leftmost - 14 - 12 * skips;
      const y1 = a.y + NODE_H;
      const y2 = b.y;
      const bend = GAP_Y / 2;
      d = `M ${x1} ${y1} C ${x1} ${y1 + bend}, ${out} ${y1}, ${out} ${y1 + bend} ` +
        `L ${out} ${y2 - bend} C ${out} ${y2}, ${x2} ${y2 - bend}, ${x2} ${y2}`;
    } else {
      const x1 = a.x + NODE_W / 2;
      const y1 = a.y + NODE_H;
      const x2 = b.x + NODE_W / 2;
      const y2 = b.y;
      const mid = (y1 + y2) / 2;
      d = `M ${x1} ${y1} C ${x1} ${mid}, ${x2} ${mid}, ${x2} ${y2}`;
    }
    (taken ? takenPaths : edges).push(svg('path', {
      d, class: 'edge' + (taken ? ' taken' : ''), 'marker-end': 'url(#arrow)',
      dataset: { from, to },
    }));
  }));
  root.append(...edges, ...takenPaths);

  for (const id of ids) {
    const p = pos.get(id);
    const state = info.get(id);
    const terminal = id === 'start' || id === 'end';
    const classes = ['node'];
    if (terminal) classes.push('terminal');
    if (visited(id)) classes.push('visited');
    if (state && state.current) classes.push('current');
    const label = terminal ? id : state.name;
    const shown = label.length > 24 ? label.slice(0, 23) + '…' : label;
    root.append(svg('g', { class: classes.join(' '), dataset: { state: id }, transform: `translate(${p.x} ${p.y})` },
      svg('title', {}, terminal ? id : `${state.name} (line ${state.line})${state.current ? ' — waiting here' : ''}`),
      svg('rect', { width: NODE_W, height: NODE_H, rx: terminal ? NODE_H / 2 : 6 }),
      svg('text', { x: NODE_W / 2, y: terminal ? NODE_H / 2 + 5 : 17, 'text-anchor': 'middle', class: 'label' }, shown),
      terminal ? null : svg('text', { x: NODE_W / 2, y: 32, 'text-anchor': 'middle', class: 'sub' }, `${id} · line ${state.line}`)));
  }
  return root;
}

function from2(from, to) {
  return from + '\u0000' + to;
}
