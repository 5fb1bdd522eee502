// The console's entry: the token panel and the router (`#/` the runs, `#/runs/ID` a run,
// `#/queues` the task queues).

import { onUnauthorized, setToken, token } from './api.js';
import { runsPage } from './runs.js';
import { runPage } from './run.js';
import { queuesPage } from './queues.js';

// Script errors are kept (and shown at the page's foot) so that neither a user nor the
// browser tests miss one.
const errors = [];
window.flowConsoleErrors = errors;
function reportError(text) {
  errors.push(text);
  const box = document.getElementById('script-errors');
  if (box) {
    box.hidden = false;
    box.textContent = 'The console hit a script error (reload the page): ' + errors.join('; ');
  }
}
window.addEventListener('error', (e) => reportError(String(e.message)));
window.addEventListener('unhandledrejection', (e) => reportError(String(e.reason)));

const main = document.getElementById('main');
let dispose = null;

function route() {
  if (dispose) dispose();
  dispose = null;
  const hash = location.hash || '#/';
  const run = hash.match(/^#\/runs\/(.+)$/);
  if (run) {
    let id;
    try {
      id = decodeURIComponent(run[1]);
    } catch (_) {
      id = run[1];
    }
    dispose = runPage(main, id);
  } else if (hash === '#/queues') {
    dispose = queuesPage(main);
  } else {
    dispose = runsPage(main);
  }
}

function showTokenState() {
  document.getElementById('token-state').textContent = token() ? 'token set' : 'no token';
}

function toggleTokenPanel(open) {
  const panel = document.getElementById('token-panel');
  panel.hidden = open === undefined ? !panel.hidden : !open;
  if (!panel.hidden) document.getElementById('token-input').focus();
}

document.getElementById('token-button').addEventListener('click', () => toggleTokenPanel());
document.getElementById('token-save').addEventListener('click', () => {
  const input = document.getElementById('token-input');
  setToken(input.value.trim());
  input.value = '';
  toggleTokenPanel(false);
  showTokenState();
  route();
});
document.getElementById('token-clear').addEventListener('click', () => {
  setToken('');
  toggleTokenPanel(false);
  showTokenState();
  route();
});
onUnauthorized(() => toggleTokenPanel(true));

window.addEventListener('hashchange', route);
showTokenState();
route();
