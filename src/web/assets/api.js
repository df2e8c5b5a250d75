// Talking to the daemon: the REST API with the session's token, and its event
// stream. EventSource cannot send a bearer token, so the stream is read with fetch
// and parsed here (text/event-stream: `id:`, `event:`, `data:` lines, blank line
// between events), resuming after the last event id when the connection drops.

const KEY = 'loom.token';

export const session = {
  get token() { return sessionStorage.getItem(KEY); },
  set token(value) {
    if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
  },
};

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function headers(extra = {}) {
  const token = session.token;
  return token ? { ...extra, Authorization: 'Bearer ' + token } : extra;
}

/** Calls `/api/v1{path}`; answers the JSON, throws ApiError with the API's sentence. */
export async function api(path, { method = 'GET', body, token } = {}) {
  const extra = body === undefined ? {} : { 'Content-Type': 'application/json' };
  const sent = token ? { ...extra, Authorization: 'Bearer ' + token } : headers(extra);
  const response = await fetch('/api/v1' + path, {
    method, headers: sent, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const message = (data && data.error) || `${response.status} ${response.statusText}`;
    const error = new ApiError(response.status, message);
    if (response.status === 401 && !token) window.dispatchEvent(new CustomEvent('loom:unauthorized'));
    throw error;
  }
  return data;
}

/**
 * Follows `/api/v1/events` (one job's when `job` is given) until `signal` aborts,
 * calling `onEvent(event, id)` for each event. `after` replays kept events after
 * that number first (0: all that are kept).
 */
export async function follow({ job, after, signal, onEvent, onOpen }) {
  let last = after;
  const query = job ? '?job=' + encodeURIComponent(job) : '';
  while (!signal.aborted) {
    try {
      const extra = last === undefined || last === null ? {} : { 'Last-Event-ID': String(last) };
      const response = await fetch('/api/v1/events' + query, { headers: headers(extra), signal });
      if (!response.ok) throw new ApiError(response.status, 'event stream refused');
      if (onOpen) onOpen();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let id = null;
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('id:')) id = line.slice(3).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (id !== null) last = id;
          if (data.length) {
            try { onEvent(JSON.parse(data.join('\n')), id); } catch (err) { console.error(err); }
          }
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status === 401) return;
    }
    // Dropped: try again shortly, from the last event seen.
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
