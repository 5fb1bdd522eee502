// What the console can do to a run: send a signal (a JSON form), cancel, redrive, and
// complete a callback token. Each asks for confirmation on the page before it posts;
// each post is JSON with the bearer token (see api.js), so the server's guard applies.

import { post, seg } from './api.js';
import { el, errorText, finished, note, replace } from './dom.js';

/**
 * The actions panel for `run`; `signals`: the names the run's workflow waits for;
 * `changed()`: called after an action was accepted, to refresh the page.
 */
export function actionsPanel(run, signals, changed) {
  const message = el('div', { id: 'action-message' });
  const confirmBox = el('div', { id: 'confirm-box' });

  const ask = (question, act) => {
    const yes = el('button', { type: 'button', class: 'confirm-yes danger', id: 'confirm-yes' }, 'Confirm');
    const no = el('button', { type: 'button', class: 'confirm-no', id: 'confirm-no' }, 'Back');
    replace(confirmBox, el('div', { class: 'confirm', role: 'alertdialog' }, el('p', {}, question), yes, no));
    yes.focus();
    no.addEventListener('click', () => replace(confirmBox));
    yes.addEventListener('click', async () => {
      replace(confirmBox);
      try {
        const text = await act();
        replace(message, note('ok', text));
        changed();
      } catch (e) {
        replace(message, note('error', errorText(e)));
      }
    });
  };
  const parse = (text, what) => {
    try {
      return { value: JSON.parse(text) };
    } catch (e) {
      replace(message, note('error', `The ${what} is not JSON: ${e.message}`));
      return null;
    }
  };

  const nameInput = el('input', { id: 'signal-name', list: 'signal-names', spellcheck: 'false', value: signals[0] || '' });
  const names = el('datalist', { id: 'signal-names' }, signals.map((s) => el('option', { value: s })));
  const payload = el('textarea', { id: 'signal-payload', rows: '4', spellcheck: 'false' }, '{}');
  const sendSignal = el('button', { type: 'button', id: 'signal-send' }, 'Send signal…');
  sendSignal.addEventListener('click', () => {
    const body = parse(payload.value, 'signal payload');
    const name = nameInput.value.trim();
    if (!body) return;
    if (!name) {
      replace(message, note('error', 'Name the signal to send.'));
      return;
    }
    ask(`Send signal “${name}” to run “${run.run_id}” with this payload?`, async () => {
      await post(`/v1/runs/${seg(run.run_id)}/signals/${seg(name)}`, body.value);
      return `Signal “${name}” sent.`;
    });
  });

  const done = finished(run.status);
  const cancel = el('button', { type: 'button', id: 'cancel-run', class: 'danger', disabled: done }, 'Cancel run…');
  cancel.addEventListener('click', () => ask(`Cancel run “${run.run_id}”? Its workflow stops at its next step.`, async () => {
    await post(`/v1/runs/${seg(run.run_id)}/cancel`);
    return 'Cancellation requested.';
  }));
  const redrivable = ['failed', 'cancelled', 'faulted'].includes(run.status);
  const redrive = el('button', { type: 'button', id: 'redrive-run', disabled: !redrivable }, 'Redrive…');
  redrive.addEventListener('click', () => ask(`Redrive run “${run.run_id}” from the step it ended in?`, async () => {
    await post(`/v1/runs/${seg(run.run_id)}/redrive`);
    return 'Redriven: the run goes again at the step it ended in.';
  }));

  const tokenInput = el('input', { id: 'callback-token', spellcheck: 'false', autocomplete: 'off', placeholder: 'callback token' });
  const value = el('textarea', { id: 'callback-value', rows: '3', spellcheck: 'false' }, 'null');
  const complete = el('button', { type: 'button', id: 'callback-complete' }, 'Complete callback…');
  complete.addEventListener('click', () => {
    const body = parse(value.value, 'callback value');
    const tokenText = tokenInput.value.trim();
    if (!body) return;
    if (!tokenText) {
      replace(message, note('error', 'Paste the callback token the run handed out.'));
      return;
    }
    ask('Complete this callback with this value?', async () => {
      await post(`/v1/callbacks/${seg(tokenText)}/complete`, body.value);
      return 'Callback completed.';
    });
  });

  return el('section', { class: 'panel actions', id: 'actions' },
    el('h2', {}, 'Actions'),
    el('div', { class: 'action-grid' },
      el('div', {}, el('h3', {}, 'Signal'),
        el('label', {}, 'Name ', nameInput), names,
        el('label', { class: 'block' }, 'Payload (JSON)', payload), sendSignal),
      el('div', {}, el('h3', {}, 'Run'), el('p', { class: 'muted' }, done
        ? 'The run has finished; a failed, cancelled or faulted run can be redriven.'
        : 'Cancel stops the run at its next step.'), cancel, ' ', redrive),
      el('div', {}, el('h3', {}, 'Callback'),
        el('label', {}, 'Token ', tokenInput),
        el('label', { class: 'block' }, 'Value (JSON)', value), complete)),
    confirmBox, message);
}
