// Requests to the flow API. The token lives in this tab's sessionStorage and travels as
// `Authorization: Bearer`; no cookies are used (`credentials: 'omit'`), and every POST is
// JSON, so another site can neither ride on a session nor post a form here.

const TOKEN_KEY = 'flow-console-token';

/** The API token this tab uses ('' for none). */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

/** Sets (or, with '', forgets) the API token. */
export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An answer other than 2xx: the API's `{code, message}`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const unauthorizedListeners = [];

/** Calls `listener(error)` whenever the API asks for a token (401). */
export function onUnauthorized(listener) {
  unauthorizedListeners.push(listener);
}

/** GET `path` as JSON. */
export function get(path) {
  return request('GET', path, undefined);
}

/** POST `body` (default `{}`) as JSON to `path`. */
export function post(path, body) {
  return request('POST', path, body === undefined ? {} : body);
}

/** A path segment, escaped. */
export const seg = encodeURIComponent;

async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
  const bearer = token();
  if (bearer) headers.Authorization = 'Bearer ' + bearer;
  const init = { method, headers, credentials: 'omit', cache: 'no-store', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'unreachable', 'the server did not answer (' + e.message + '); is it running?');
  }
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    const error = new ApiError(
      response.status,
      (data && data.code) || 'http_' + response.status,
      (data && data.message) || response.statusText,
    );
    if (response.status === 401) unauthorizedListeners.forEach((l) => l(error));
    throw error;
  }
  return data;
}
