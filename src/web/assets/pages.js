// The pages: Dashboard, Jobs, Job history, Fire, Nodes. Each reads the REST API and
// follows the event stream while it shows something that can change. Each marks
// `loom:rendered` (performance.mark) once its data is on screen, which the browser
// tests wait for and the web benchmark measures.

import { html, useState, useEffect, useRef, useMemo } from './vendor/preact-htm.js';
import { api, follow } from './api.js';
import { ansiPieces } from './ansi.js';

// ---- small pieces --------------------------------------------------------------

function rendered(page) {
  performance.mark('loom:rendered', { detail: page });
  document.body.dataset.rendered = page;
}

function useTicker(ms) {
  const [, setTick] = useState(0);
  useEffect(() => {
    const timer = setInterval(() => setTick((t) => t + 1), ms);
    return () => clearInterval(timer);
  }, [ms]);
}

/** Follows the event stream while mounted; `handler` may change between renders. */
function useEvents(job, handler, { active = true, after } = {}) {
  const current = useRef(handler);
  current.current = handler;
  useEffect(() => {
    if (!active) return undefined;
    const stop = new AbortController();
    follow({ job, after, signal: stop.signal, onEvent: (e, id) => current.current(e, id) });
    return () => stop.abort();
  }, [job, active]);
}

function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null });
  const latest = useRef(null);
  latest.current = load;
  const gate = useRef({ busy: false, again: false, timer: null, last: 0 });
  const run = () => {
    const g = gate.current;
    g.busy = true;
    g.last = Date.now();
    latest.current()
      .then((data) => setState({ data, error: null }), (error) => setState((s) => ({ data: s.data, error })))
      .finally(() => { g.busy = false; if (g.again) { g.again = false; reload(); } });
  };
  // What events ask for: a busy fleet's burst of fires costs one load a second at
  // most, and never two at once; the last ask is always answered.
  const reload = () => {
    const g = gate.current;
    if (g.timer) return;
    if (g.busy) { g.again = true; return; }
    const wait = g.last + 1000 - Date.now();
    if (wait <= 0) run();
    else g.timer = setTimeout(() => { g.timer = null; run(); }, wait);
  };
  useEffect(() => {
    run();
    return () => { clearTimeout(gate.current.timer); gate.current.timer = null; };
  }, deps);
  return [state.data, state.error, reload];
}

function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function relative(at) {
  if (!at) return '–';
  const seconds = (new Date(at).getTime() - Date.now()) / 1000;
  const size = Math.abs(seconds);
  const text = size < 60 ? `${Math.round(size)} s` : size < 3600 ? `${Math.round(size / 60)} min`
    : size < 172800 ? `${Math.round(size / 3600)} h` : `${Math.round(size / 86400)} days`;
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

function When({ at }) {
  if (!at) return html`<span>–</span>`;
  const absolute = new Date(at).toLocaleString();
  return html`<time datetime=${at} title=${absolute}>${relative(at)}</time>`;
}

function Status({ status }) {
  return html`<span class=${'badge s-' + status}>${status}</span>`;
}

function Failure({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.message || String(error)}</p>`;
}

function fireMs(fire) {
  if (!fire.started) return null;
  const end = fire.finished ? new Date(fire.finished) : new Date();
  return end - new Date(fire.started);
}

/** The final attempt of each node in `cells` (already in recorded order), by fire and node. */
function finalCells(cells) {
  const byFire = new Map();
  for (const cell of cells) {
    if (!byFire.has(cell.fire_id)) byFire.set(cell.fire_id, new Map());
    byFire.get(cell.fire_id).set(cell.node, cell);
  }
  return byFire;
}

async function cellsFor(ids) {
  const out = [];
  for (let i = 0; i < ids.length; i += 1000) {
    const chunk = ids.slice(i, i + 1000);
    if (chunk.length) out.push(...(await api('/fires/cells?ids=' + chunk.join(','))));
  }
  return finalCells(out);
}

/** A row of per-node coloured cells: one fire's result on each node. */
function NodeCells({ nodes, cells, fire }) {
  if (!nodes || nodes.length === 0) return html`<span class="muted">–</span>`;
  return html`<span class="cells" role="list" aria-label="Result on each node">
    ${nodes.map((node) => {
      const cell = cells && cells.get(node);
      const status = cell ? cell.status : (fire && fire.status === 'running' ? 'running' : 'none');
      const label = `${node}: ${status}${cell ? ', ' + duration(cell.duration_ms) : ''}`;
      return html`<span role="listitem" class=${'cell s-' + status} title=${label} aria-label=${label}></span>`;
    })}
  </span>`;
}

// ---- Dashboard -------------------------------------------------------------------

export function Dashboard() {
  useTicker(5000);
  const [data, error, reload] = useLoad(async () => {
    const [status, recent, failures] = await Promise.all([
      api('/status'), api('/fires?limit=50'), api('/fires?failed=true&limit=10'),
    ]);
    const running = status.running.filter((f) => f.id !== null);
    const records = new Map(recent.map((f) => [f.id, f]));
    for (const fire of running) {
      if (!records.has(fire.id)) {
        try { records.set(fire.id, (await api('/fires/' + fire.id)).fire); } catch { /* finished meanwhile */ }
      }
    }
    const cells = await cellsFor(running.map((f) => f.id));
    return { status, records, failures, cells, at: Date.now() };
  }, []);
  const [progress, setProgress] = useState({});
  useEffect(() => { if (data) rendered('dashboard'); }, [data]);
  useEvents(null, (event) => {
    if (event.type === 'fire-started' || event.type === 'fire-finished') reload();
    else if (event.type === 'node-finished' && event.fire !== null) {
      // A node whose attempt failed with a retry to come is not done yet.
      setProgress((p) => {
        const nodes = { ...(p[event.fire] || {}) };
        if (event.retrying) delete nodes[event.node]; else nodes[event.node] = event.status;
        return { ...p, [event.fire]: nodes };
      });
    }
  });
  if (!data) return html`<h1>Dashboard</h1><${Failure} error=${error} />${!error && html`<p role="status">Loading…</p>`}`;
  const { status, records, failures, cells } = data;
  const started = new Date(status.started);
  const uptime = (status.uptime_seconds + (Date.now() - data.at) / 1000) * 1000;
  return html`
    <h1>Dashboard</h1>
    <${Failure} error=${error} />
    ${status.config_errors.length > 0 && html`
      <section class="panel alert" aria-labelledby="reload-errors">
        <h2 id="reload-errors">The last reload failed</h2>
        <p>The configuration in force is the one before it. Fix these and reload:</p>
        <ul class="mono">${status.config_errors.map((e) => html`<li>${e}</li>`)}</ul>
      </section>`}
    ${status.restart_pending.length > 0 && html`
      <section class="panel" aria-labelledby="restart">
        <h2 id="restart">Waiting for a restart</h2>
        <ul>${status.restart_pending.map((p) => html`<li><code>${p.setting}</code>: ${p.in_force} → ${p.configured}</li>`)}</ul>
      </section>`}
    <dl class="facts" aria-label="Daemon status">
      <div><dt>Status</dt><dd>${status.config_errors.length > 0
        ? html`<span class="badge s-interrupted">running; the last reload failed</span>`
        : html`<span class="badge s-ok">running</span>`}</dd></div>
      <div><dt>Up for</dt><dd title=${'since ' + started.toLocaleString()}>${duration(uptime)}</dd></div>
      <div><dt>Jobs</dt><dd><a href="#/jobs">${status.jobs}</a></dd></div>
      <div><dt>Nodes</dt><dd><a href="#/nodes">${status.nodes}</a></dd></div>
      <div><dt>SSH masters open</dt><dd>${status.ssh_masters}</dd></div>
      <div><dt>Version</dt><dd>${status.version}</dd></div>
    </dl>
    <div class="grid">
      <section class="panel" aria-labelledby="running">
        <h2 id="running">Running now</h2>
        ${status.running.length === 0 ? html`<p class="muted">Nothing is running.</p>` : html`
          <ul class="plain">${status.running.map((fire) => {
            const record = records.get(fire.id);
            const total = record ? record.nodes.length : 0;
            const done = new Set([...(cells.get(fire.id)?.keys() || []), ...Object.keys(progress[fire.id] || {})]).size;
            return html`<li class="running-fire">
              <a href=${'#/fires/' + fire.id}>${fire.job}</a> <span class="muted">#${fire.id} · ${fire.trigger}</span>
              <progress max=${total || 1} value=${done} aria-label=${`${fire.job}: ${done} of ${total} nodes done`}></progress>
              <span class="progress-text">${done} of ${total} nodes done</span>
            </li>`;
          })}</ul>`}
      </section>
      <section class="panel" aria-labelledby="next">
        <h2 id="next">Next fires</h2>
        ${status.next.length === 0 ? html`<p class="muted">No job is scheduled.</p>` : html`
          <ul class="plain">${status.next.slice(0, 10).map((n) => html`
            <li><a href=${'#/jobs/' + encodeURIComponent(n.job)}>${n.job}</a> <${When} at=${n.at} /></li>`)}</ul>`}
      </section>
      <section class="panel" aria-labelledby="failures">
        <h2 id="failures">Recent failures</h2>
        ${failures.length === 0 ? html`<p class="muted">No failed fire on record.</p>` : html`
          <ul class="plain">${failures.map((f) => html`
            <li><a href=${'#/fires/' + f.id}>${f.job} #${f.id}</a> <${Status} status=${f.status} />
              <span class="muted">${f.failed} of ${f.nodes.length} nodes failed · <${When} at=${f.started || f.scheduled} /></span></li>`)}</ul>`}
      </section>
    </div>`;
}

// ---- Jobs ------------------------------------------------------------------------

function EnabledSwitch({ job, admin, onChanged }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const toggle = async () => {
    setBusy(true);
    try {
      onChanged(await api(`/jobs/${encodeURIComponent(job.name)}/${job.enabled ? 'disable' : 'enable'}`, { method: 'POST' }));
      setError(null);
    } catch (err) { setError(err); }
    setBusy(false);
  };
  return html`<label class="switch">
    <input type="checkbox" role="switch" checked=${job.enabled} disabled=${!admin || busy} onChange=${toggle}
      aria-label=${`${job.name} enabled`} />
    <span aria-hidden="true">${job.enabled ? 'on' : 'off'}</span>
  </label>${error && html`<span class="error" role="alert">${error.message}</span>`}`;
}

function RunNow({ job }) {
  const [chosen, setChosen] = useState([]);
  const [error, setError] = useState(null);
  const run = async (nodes, check = false) => {
    try {
      const started = await api(`/jobs/${encodeURIComponent(job.name)}/run`, { method: 'POST', body: { nodes, check } });
      location.hash = '#/fires/' + started.fire;
    } catch (err) { setError(err); }
  };
  return html`<div class="run">
    <button type="button" onClick=${() => run([])} aria-label=${`Run now: ${job.name} on all its nodes`}>Run now</button>
    ${job.resources > 0 && html`<button type="button" onClick=${() => run([], true)}
      aria-label=${`Check: what ${job.name}'s resources would change on all its nodes, changing nothing`}>Check</button>`}
    ${job.targets.length > 1 && html`<details>
      <summary aria-label=${`Nodes… to run ${job.name} on`}>Nodes…</summary>
      <fieldset>
        <legend>Run on</legend>
        ${job.targets.map((node) => html`<label class="check"><input type="checkbox" checked=${chosen.includes(node)}
          onChange=${(e) => setChosen(e.target.checked ? [...chosen, node] : chosen.filter((n) => n !== node))} /> ${node}</label>`)}
        <button type="button" disabled=${chosen.length === 0} onClick=${() => run(chosen)}>Run on ${chosen.length} chosen</button>
      </fieldset>
    </details>`}
    ${error && html`<span class="error" role="alert">${error.message}</span>`}
  </div>`;
}

function Schedule({ job }) {
  if (!job.schedule) return html`<span class="muted">on demand</span>`;
  return html`<code>${job.schedule}</code><br /><span class="words">${job.schedule_words}</span>`;
}

export function Jobs({ admin }) {
  useTicker(10000);
  const [data, error, reload] = useLoad(async () => {
    const jobs = await api('/jobs');
    const cells = await cellsFor(jobs.filter((j) => j.last).map((j) => j.last.id));
    return { jobs, cells };
  }, []);
  const [search, setSearch] = useState('');
  const [show, setShow] = useState('all');
  const [changed, setChanged] = useState({});
  // A long list is drawn a screenful at a time; search reaches every job.
  const [limit, setLimit] = useState(100);
  useEffect(() => { if (data) rendered('jobs'); }, [data]);
  useEvents(null, (event) => { if (event.type === 'fire-finished') reload(); });
  const jobs = useMemo(() => {
    if (!data) return [];
    const words = search.trim().toLowerCase();
    return data.jobs.map((j) => changed[j.name] || j).filter((job) => {
      if (show === 'enabled' && !job.enabled) return false;
      if (show === 'disabled' && job.enabled) return false;
      if (show === 'failing' && !(job.last && job.last.status !== 'ok')) return false;
      if (!words) return true;
      const text = [job.name, job.task, job.description || '', job.schedule || '', ...job.targets].join(' ').toLowerCase();
      return words.split(/\s+/).every((w) => text.includes(w));
    });
  }, [data, search, show, changed]);
  if (!data) return html`<h1>Jobs</h1><${Failure} error=${error} />${!error && html`<p role="status">Loading…</p>`}`;
  return html`
    <h1>Jobs</h1>
    <${Failure} error=${error} />
    <div class="filters" role="search">
      <label for="job-search">Search</label>
      <input id="job-search" type="search" value=${search} placeholder="name, task, node…" onInput=${(e) => setSearch(e.target.value)} />
      <label for="job-show">Show</label>
      <select id="job-show" value=${show} onChange=${(e) => setShow(e.target.value)}>
        <option value="all">all jobs</option>
        <option value="enabled">enabled</option>
        <option value="disabled">disabled</option>
        <option value="failing">last fire not ok</option>
      </select>
      <span class="muted" role="status">${jobs.length} of ${data.jobs.length} jobs</span>
    </div>
    <div class="table-wrap">
    <table class="jobs">
      <caption class="sr">Jobs: schedule, next fire, last result on each node, enabled${admin ? ', run now' : ''}</caption>
      <thead><tr><th scope="col">Job</th><th scope="col">Schedule</th><th scope="col">Next</th>
        <th scope="col">Last result</th><th scope="col">Enabled</th>${admin && html`<th scope="col">Run</th>`}</tr></thead>
      <tbody>${jobs.slice(0, limit).map((job) => html`<tr key=${job.name} data-job=${job.name}>
        <th scope="row"><a href=${'#/jobs/' + encodeURIComponent(job.name)}>${job.name}</a>
          <div class="muted small">${job.task}${job.description ? ' · ' + job.description : ''}</div></th>
        <td data-label="Schedule"><${Schedule} job=${job} /></td>
        <td data-label="Next"><${When} at=${job.next} /></td>
        <td data-label="Last result">${job.last ? html`<a href=${'#/fires/' + job.last.id} class="last">
            <${Status} status=${job.last.status} /></a> <${NodeCells} nodes=${job.last.nodes} cells=${data.cells.get(job.last.id)} fire=${job.last} />`
          : html`<span class="muted">never ran</span>`}</td>
        <td data-label="Enabled"><${EnabledSwitch} job=${job} admin=${admin} onChanged=${(j) => setChanged({ ...changed, [j.name]: j })} /></td>
        ${admin && html`<td data-label="Run"><${RunNow} job=${job} /></td>`}
      </tr>`)}</tbody>
    </table>
    </div>
    ${jobs.length > limit && html`<p><button type="button" class="quiet" onClick=${() => setLimit(jobs.length)}>
      Show all ${jobs.length} jobs (${limit} shown)</button></p>`}`;
}

// ---- Job history -----------------------------------------------------------------

const PAGE = 50;

function DurationChart({ fires }) {
  const shown = [...fires].reverse();
  const values = shown.map(fireMs);
  const most = Math.max(1, ...values.filter((v) => v !== null));
  const width = 600;
  const height = 120;
  // Slots for a full page, so a short history draws narrow bars, not one wide block.
  const bar = width / Math.max(shown.length, PAGE);
  const label = shown.length === 0 ? 'No fires to chart'
    : `Durations of ${shown.length} fires, oldest left: from ${duration(Math.min(...values.filter((v) => v !== null)))} to ${duration(most)}`;
  return html`<figure class="chart">
    <svg viewBox=${`0 0 ${width} ${height}`} role="img" aria-label=${label} preserveAspectRatio="none">
      ${shown.map((fire, i) => {
        const h = values[i] === null ? 0 : Math.max(2, (values[i] / most) * (height - 4));
        return html`<rect class=${'s-' + fire.status} x=${i * bar + 1} y=${height - h} width=${Math.max(bar - 2, 1)} height=${h}>
          <title>#${fire.id} ${fire.status}: ${duration(values[i])}</title></rect>`;
      })}
    </svg>
    <figcaption>Duration of each fire (longest ${duration(most)})</figcaption>
  </figure>`;
}

function Heatmap({ fires, cells }) {
  const shown = [...fires].reverse();
  const nodes = [...new Set(shown.flatMap((f) => f.nodes))].sort();
  if (shown.length === 0) return html`<p class="muted">No fire on record.</p>`;
  return html`<p id="heatmap-caption" class="caption">Result of each fire (columns, oldest left) on each node (rows)</p>
  <div class="table-wrap"><table class="heatmap" aria-labelledby="heatmap-caption">
    <thead><tr><th scope="col">Node</th>${shown.map((f) => html`<th scope="col">
      <a href=${'#/fires/' + f.id} title=${`#${f.id} ${f.status}, ${new Date(f.scheduled).toLocaleString()}`}
        aria-label=${`Fire ${f.id}, ${f.status}`}><span class=${'dot s-' + f.status}></span></a></th>`)}</tr></thead>
    <tbody>${nodes.map((node) => html`<tr><th scope="row">${node}</th>${shown.map((f) => {
      const cell = cells.get(f.id)?.get(node);
      const status = cell ? cell.status : !f.nodes.includes(node) ? 'absent' : f.status === 'running' ? 'running' : 'none';
      const label = `${node}, fire ${f.id}: ${status}${cell ? ', ' + duration(cell.duration_ms) : ''}`;
      return html`<td class=${'hm s-' + status} title=${label}><span class="sr">${label}</span></td>`;
    })}</tr>`)}</tbody>
  </table></div>`;
}

export function JobHistory({ name, admin }) {
  const [cursors, setCursors] = useState([null]);
  const before = cursors[cursors.length - 1];
  const [job, jobError, reloadJob] = useLoad(() => api('/jobs/' + encodeURIComponent(name)), [name]);
  const [page, error, reload] = useLoad(async () => {
    const fires = await api(`/fires?job=${encodeURIComponent(name)}&limit=${PAGE}${before ? '&before=' + before : ''}`);
    const cells = await cellsFor(fires.map((f) => f.id));
    return { fires, cells };
  }, [name, before]);
  const [override, setOverride] = useState(null);
  useEffect(() => { if (page && job) rendered('history'); }, [page, job]);
  useEvents(name, (event) => {
    if (event.type === 'fire-started' || event.type === 'fire-finished') { if (!before) reload(); reloadJob(); }
  });
  const shown = override || job;
  if (!shown) return html`<h1>${name}</h1><${Failure} error=${jobError} />${!jobError && html`<p role="status">Loading…</p>`}`;
  const fires = page ? page.fires : [];
  return html`
    <p class="crumbs"><a href="#/jobs">Jobs</a> /</p>
    <h1>${name}</h1>
    <${Failure} error=${jobError || error} />
    <dl class="facts">
      <div><dt>Task</dt><dd><code>${shown.task}</code></dd></div>
      <div><dt>Schedule</dt><dd><${Schedule} job=${shown} /></dd></div>
      <div><dt>Next</dt><dd><${When} at=${shown.next} /></dd></div>
      <div><dt>Targets</dt><dd>${shown.targets.join(', ')}</dd></div>
      <div><dt>Enabled</dt><dd><${EnabledSwitch} job=${shown} admin=${admin} onChanged=${setOverride} /></dd></div>
    </dl>
    ${shown.description && html`<p>${shown.description}</p>`}
    ${admin && html`<div class="job-actions"><${RunNow} job=${shown} /></div>`}
    <section aria-labelledby="history">
      <h2 id="history">History</h2>
      ${page && html`<${DurationChart} fires=${fires} /><${Heatmap} fires=${fires} cells=${page.cells} />`}
      <nav class="pager" aria-label="History pages">
        <button type="button" disabled=${cursors.length === 1} onClick=${() => setCursors(cursors.slice(0, -1))}>Newer</button>
        <span class="muted">page ${cursors.length}</span>
        <button type="button" disabled=${fires.length < PAGE}
          onClick=${() => setCursors([...cursors, fires[fires.length - 1].id])}>Older</button>
      </nav>
    </section>`;
}

// ---- Fire ------------------------------------------------------------------------

function Output({ text }) {
  if (!text) return html`<p class="muted small">No output.</p>`;
  return html`<pre class="output" tabindex="0">${ansiPieces(text).map((p) => p.classes ? html`<span class=${p.classes}>${p.text}</span>` : p.text)}</pre>`;
}

/**
 * Per-resource results of a node in a fire: a row per resource (and handler) with
 * unchanged/changed/failed/skipped, what changed (field: before → after), why it
 * failed or was skipped, and the content's diff.
 */
function Resources({ record }) {
  if (!record || !record.resources || record.resources.length === 0) return null;
  const changes = (r) => (r.changes || []).map((c) => html`<div><code>${c.field}</code>: ${c.before ?? '—'} → ${c.after ?? '—'}</div>`);
  return html`<table class="resources"><caption>Resources</caption>
    <thead><tr><th scope="col">Resource</th><th scope="col">Result</th><th scope="col">Changes</th></tr></thead>
    <tbody>${record.resources.map((r) => html`<tr><th scope="row">${r.handler ? 'handler ' : ''}${r.resource}</th>
      <td><${Status} status=${r.status} /></td>
      <td>${changes(r)}${r.reason && html`<div class="error">${r.reason}</div>`}${r.diff && html`<pre class="output diff" tabindex="0">${r.diff}</pre>`}</td></tr>`)}</tbody>
  </table>`;
}

export function Fire({ id, admin }) {
  const [detail, error, reload] = useLoad(() => api('/fires/' + encodeURIComponent(id)), [id]);
  const [live, setLive] = useState({});
  const [cancelError, setCancelError] = useState(null);
  const running = detail && detail.fire.status === 'running';
  useEffect(() => { if (detail) rendered('fire'); }, [detail]);
  // While it runs, replay the kept events of its job (from the first kept: 0) to
  // show the output so far, then follow live.
  useEvents(detail ? detail.fire.job : null, (event) => {
    if (String(event.fire) !== String(id)) return;
    if (event.type === 'output') {
      setLive((l) => ({ ...l, [event.node]: { ...(l[event.node] || {}), text: ((l[event.node] || {}).text || '') + event.text } }));
    } else if (event.type === 'node-finished' && event.retrying) {
      // The node runs again: its next attempt's output follows a line that says so.
      setLive((l) => {
        const was = l[event.node] || {};
        const note = `\n— attempt ${event.attempt} ${event.status}${event.error ? ': ' + event.error : ''}; retrying —\n`;
        return { ...l, [event.node]: { ...was, status: 'retrying', text: (was.text || '') + note } };
      });
    } else if (event.type === 'node-finished') {
      setLive((l) => ({ ...l, [event.node]: { ...(l[event.node] || {}), status: event.status, error: event.error, seconds: event.seconds } }));
    } else if (event.type === 'fire-finished') {
      reload();
    }
  }, { active: !!running, after: 0 });
  if (!detail) return html`<h1>Fire ${id}</h1><${Failure} error=${error} />${!error && html`<p role="status">Loading…</p>`}`;
  const { fire, results } = detail;
  const byNode = new Map();
  for (const record of results) {
    if (!byNode.has(record.node)) byNode.set(record.node, []);
    byNode.get(record.node).push(record);
  }
  const cancel = async () => {
    try { await api(`/fires/${fire.id}/cancel`, { method: 'POST' }); setCancelError(null); } catch (err) { setCancelError(err); }
  };
  return html`
    <p class="crumbs"><a href="#/jobs">Jobs</a> / <a href=${'#/jobs/' + encodeURIComponent(fire.job)}>${fire.job}</a> /</p>
    <h1>Fire #${fire.id} of ${fire.job} <${Status} status=${fire.status} /></h1>
    <${Failure} error=${error || cancelError} />
    <dl class="facts">
      <div><dt>Trigger</dt><dd>${fire.trigger}</dd></div>
      <div><dt>Scheduled</dt><dd><${When} at=${fire.scheduled} /></dd></div>
      <div><dt>Started</dt><dd><${When} at=${fire.started} /></dd></div>
      <div><dt>Duration</dt><dd>${duration(fireMs(fire))}</dd></div>
      <div><dt>Nodes</dt><dd>${fire.ok} ok, ${fire.failed} failed, of ${fire.nodes.length}</dd></div>
    </dl>
    ${fire.note && html`<p class="note">${fire.note}</p>`}
    ${running && admin && html`<button type="button" class="danger" onClick=${cancel}>Cancel fire</button>`}
    ${running && html`<p class="muted" role="status">Running: output appears as it arrives.</p>`}
    ${fire.nodes.map((node) => {
      const attempts = byNode.get(node) || [];
      const last = attempts[attempts.length - 1];
      const stream = live[node];
      const status = last ? last.status : stream && stream.status ? stream.status : running ? 'running' : 'none';
      return html`<section class=${'node-result panel s-border-' + status} aria-labelledby=${'node-' + node} data-node=${node}>
        <h2 id=${'node-' + node}>${node} <${Status} status=${status} /></h2>
        ${attempts.length > 0 ? attempts.map((record) => html`<div class="attempt">
          <dl class="facts small">
            <div><dt>Attempt</dt><dd>${record.attempt}</dd></div>
            <div><dt>Exit code</dt><dd>${record.exit_code ?? '–'}</dd></div>
            <div><dt>Duration</dt><dd>${duration(record.duration_ms)}</dd></div>
            <div><dt>Started</dt><dd><${When} at=${record.started} /></dd></div>
            ${record.daemon && html`<div><dt>Daemon</dt><dd>${record.daemon}</dd></div>`}
          </dl>
          ${record.error && html`<pre class="output error-text">${record.error}</pre>`}
          <${Output} text=${record.output} />
          <${Resources} record=${record} />
        </div>`) : html`
          ${stream && stream.error && html`<pre class="output error-text">${stream.error}</pre>`}
          <div aria-live="polite"><${Output} text=${stream && stream.text} /></div>`}
      </section>`;
    })}`;
}

// ---- Nodes -----------------------------------------------------------------------

export function Nodes() {
  const [nodes, error] = useLoad(() => api('/nodes'), []);
  useEffect(() => { if (nodes) rendered('nodes'); }, [nodes]);
  if (!nodes) return html`<h1>Nodes</h1><${Failure} error=${error} />${!error && html`<p role="status">Loading…</p>`}`;
  return html`
    <h1>Nodes</h1>
    <div class="table-wrap">
    <table class="nodes">
      <caption class="sr">Nodes: address, authentication, SSH master, last result, last seen</caption>
      <thead><tr><th scope="col">Node</th><th scope="col">Address</th><th scope="col">Authenticates with</th>
        <th scope="col">SSH master</th><th scope="col">Last result</th><th scope="col">Last seen</th></tr></thead>
      <tbody>${nodes.map((node) => {
        const seen = node.last ? new Date(new Date(node.last.started).getTime() + node.last.duration_ms).toISOString() : null;
        return html`<tr data-node=${node.name}>
          <th scope="row">${node.name}</th>
          <td data-label="Address"><code>${node.local ? 'this host' : `${node.user ? node.user + '@' : ''}${node.host}${node.port ? ':' + node.port : ''}`}</code></td>
          <td data-label="Authenticates with">${node.auth}</td>
          <td data-label="SSH master"><span class=${'badge m-' + (node.master || 'none')}>${node.master || 'not connected'}</span></td>
          <td data-label="Last result">${node.last ? html`<a href=${'#/fires/' + node.last.fire_id}><${Status} status=${node.last.status} /></a>` : html`<span class="muted">none</span>`}</td>
          <td data-label="Last seen"><${When} at=${seen} /></td>
        </tr>`;
      })}</tbody>
    </table>
    </div>`;
}
