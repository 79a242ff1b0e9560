// The etcdcore web console. Everything goes through the member's /v3/ JSON
// gateway with the user's token, so the server's auth checks decide what the
// user may do; hiding write buttons for read-only users is only a courtesy.
// Keys and values are handled as "binary strings" (one char per byte), as
// atob/btoa produce them, and shown as UTF-8 text when they decode.
'use strict';

const $ = (sel) => document.querySelector(sel);
const S = {
  token: sessionStorage.getItem('etcdcore.token') || '',
  user: sessionStorage.getItem('etcdcore.user') || '',
  authOn: false,
  perms: null, // null: may do anything; else [{type, key, end}] of the user's roles
  prefix: '',
  cursor: null,
  selected: null, // the binary key shown on the right
  kv: null,
  history: [],
  watch: null,
  leases: [],
  samples: [],
};
const PAGE = 50;
// Each lease shown costs a time-to-live call.
const MAX_LEASES = 500;
const utf8 = new TextDecoder('utf-8', { fatal: true });

// -- bytes --------------------------------------------------------------------
function toBin(text) {
  return Array.from(new TextEncoder().encode(text), (c) => String.fromCharCode(c)).join('');
}
function fromB64(s) { return s ? atob(s) : ''; }
function asText(bin) {
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  try { return utf8.decode(bytes); } catch (e) { return null; }
}
function showKey(bin) {
  const t = asText(bin);
  if (t !== null) return t;
  return Array.from(bin, (c) => {
    const n = c.charCodeAt(0);
    return n >= 0x20 && n < 0x7f ? c : '\\x' + n.toString(16).padStart(2, '0');
  }).join('');
}
function prefixEnd(bin) {
  for (let i = bin.length - 1; i >= 0; i--) {
    const n = bin.charCodeAt(i);
    if (n < 0xff) return bin.slice(0, i) + String.fromCharCode(n + 1);
  }
  return '\0'; // every key from here on
}
function hexdump(bin) {
  const lines = [];
  for (let off = 0; off < bin.length; off += 16) {
    const chunk = bin.slice(off, off + 16);
    const hex = Array.from(chunk, (c) => c.charCodeAt(0).toString(16).padStart(2, '0')).join(' ');
    const ascii = Array.from(chunk, (c) => {
      const n = c.charCodeAt(0);
      return n >= 0x20 && n < 0x7f ? c : '.';
    }).join('');
    lines.push(off.toString(16).padStart(8, '0') + '  ' + hex.padEnd(48) + ' ' + ascii);
  }
  return lines.join('\n');
}
// How a value is shown: [format, text].
function render(bin) {
  const text = asText(bin);
  if (text === null) return ['hex', hexdump(bin)];
  const t = text.trim();
  if (t && (t[0] === '{' || t[0] === '[')) {
    try { return ['JSON', JSON.stringify(JSON.parse(t), null, 2)]; } catch (e) { /* text */ }
  }
  return ['text', text];
}
const hexId = (id) => BigInt(id || 0).toString(16);
function bytes(n) {
  n = Number(n || 0);
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + units[i];
}

// -- DOM ----------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}
function metaRows(table, rows) {
  table.replaceChildren(...rows.map(([k, v]) => el('tr', {}, el('td', {}, k), el('td', {}, v))));
}
function showError(e) {
  const box = $('#error');
  if (!e) { box.hidden = true; return; }
  box.textContent = e.message || String(e);
  box.hidden = false;
}

// -- the gateway --------------------------------------------------------------
function headers() {
  const h = { 'Content-Type': 'application/json' };
  if (S.token) h.Authorization = S.token;
  return h;
}
class ApiError extends Error {
  constructor(message, code, status) { super(message); this.code = code; this.status = status; }
}
const AUTH_ERRORS = ['etcdserver: invalid auth token', 'etcdserver: user name is empty',
  'etcdserver: revision of auth store is old'];
async function call(path, body, quiet) {
  const resp = await fetch(path, { method: 'POST', headers: headers(), body: JSON.stringify(body || {}) });
  const text = await resp.text();
  let data;
  try { data = JSON.parse(text); } catch (e) { data = { message: text.trim() }; }
  if (!resp.ok) {
    const err = new ApiError(data.message || data.error || resp.statusText, data.code, resp.status);
    if (S.authOn && AUTH_ERRORS.includes(err.message) && !quiet) { needLogin(err.message); }
    throw err;
  }
  return data;
}
// etcd refuses an empty key: a range from the very first key starts at "\0".
const range = (key, end, extra) => call('/v3/kv/range', Object.assign(
  { key: btoa(key || '\0'), range_end: end === undefined ? undefined : btoa(end) }, extra || {}));

// -- auth ---------------------------------------------------------------------
async function detectAuth() {
  try {
    const st = await call('/v3/auth/status', {}, true);
    S.authOn = !!st.enabled;
    return true;
  } catch (e) {
    // Without a token (or with a stale one) the status call is refused only
    // when auth is on; a non-root user's valid token gets "permission denied".
    S.authOn = true;
    return e.message === 'etcdserver: permission denied' && !!S.token;
  }
}
async function loadPermissions() {
  S.perms = null;
  if (!S.authOn) return;
  const user = await call('/v3/auth/user/get', { name: S.user });
  const roles = user.roles || [];
  if (roles.includes('root')) return;
  const perms = [];
  for (const role of roles) {
    const r = await call('/v3/auth/role/get', { role });
    for (const p of r.perm || []) {
      perms.push({ type: p.permType || 'READ', key: fromB64(p.key), end: fromB64(p.range_end) });
    }
  }
  S.perms = perms;
}
function covers(p, key) {
  if (p.end === '') return key === p.key;
  if (p.end === '\0') return key >= p.key;
  return key >= p.key && key < p.end;
}
const writes = (p) => p.type === 'WRITE' || p.type === 'READWRITE';
function canWrite(key) { return S.perms === null || S.perms.some((p) => writes(p) && covers(p, key)); }
function canWriteAny() { return S.perms === null || S.perms.some(writes); }
const isAdmin = () => S.perms === null;

function needLogin(message) {
  stopWatch();
  S.token = '';
  sessionStorage.removeItem('etcdcore.token');
  $('#app').hidden = true;
  $('#tabs').hidden = true;
  $('#login').hidden = false;
  $('#logout').hidden = true;
  $('#whoami').textContent = '';
  $('#login-error').textContent = message || '';
  $('#login-user').value = S.user || '';
}
async function login(ev) {
  ev.preventDefault();
  const name = $('#login-user').value;
  const password = $('#login-password').value;
  try {
    S.token = '';
    const r = await call('/v3/auth/authenticate', { name, password }, true);
    S.token = r.token;
    S.user = name;
    sessionStorage.setItem('etcdcore.token', r.token);
    sessionStorage.setItem('etcdcore.user', name);
    $('#login-password').value = '';
    await enter();
  } catch (e) {
    $('#login-error').textContent = e.message;
  }
}
function logout() {
  sessionStorage.removeItem('etcdcore.user');
  S.user = '';
  needLogin('');
}
async function enter() {
  await loadPermissions();
  $('#login').hidden = true;
  $('#tabs').hidden = false;
  $('#app').hidden = false;
  $('#logout').hidden = !S.authOn;
  $('#whoami').textContent = S.authOn
    ? S.user + (isAdmin() ? ' (root)' : canWriteAny() ? '' : ' (read-only)') : 'auth disabled';
  document.body.classList.toggle('readonly', !canWriteAny());
  $('#new-key').hidden = !canWriteAny();
  await browse(S.prefix);
}

// -- keys: the tree -----------------------------------------------------------
async function count(prefix) {
  const r = await range(prefix, prefixEnd(prefix), { count_only: true });
  return Number(r.count || 0);
}
async function browse(prefix) {
  S.prefix = prefix;
  S.cursor = prefix;
  $('#prefix-input').value = showKey(prefix);
  $('#children').replaceChildren();
  crumbs();
  try {
    const n = await count(prefix);
    $('#prefix-count').textContent = `${n} key${n === 1 ? '' : 's'} under "${showKey(prefix)}"`;
    await more();
    showError(null);
  } catch (e) { showError(e); }
}
function crumbs() {
  const parts = [el('a', { onclick: () => browse('') }, '(all)')];
  let at = 0;
  while (true) {
    const i = S.prefix.indexOf('/', at);
    if (i < 0) break;
    const p = S.prefix.slice(0, i + 1);
    parts.push(el('a', { onclick: () => browse(p) }, showKey(S.prefix.slice(at, i + 1))));
    at = i + 1;
  }
  $('#crumbs').replaceChildren(...parts);
}
// One page of the prefix's children: the keys right under it and its
// "directories" (the next segment up to a '/'), each counted.
async function more() {
  const prefix = S.prefix;
  const end = prefixEnd(prefix);
  const found = [];
  let cursor = S.cursor;
  let exhausted = false;
  while (found.length < PAGE) {
    const r = await range(cursor, end, { keys_only: true, limit: PAGE });
    const kvs = r.kvs || [];
    if (!kvs.length) { exhausted = true; break; }
    let jumped = false;
    for (const kv of kvs) {
      const key = fromB64(kv.key);
      const rest = key.slice(prefix.length);
      const slash = rest.indexOf('/');
      if (slash >= 0 && slash < rest.length - 1) {
        const dir = prefix + rest.slice(0, slash + 1);
        found.push({ dir: true, key: dir });
        cursor = prefixEnd(dir); // skip the rest of the directory
        jumped = true;
        break;
      }
      found.push({ dir: false, key });
      cursor = key + '\0';
      if (found.length >= PAGE) break;
    }
    if (!jumped && !r.more && found.length < PAGE) { exhausted = true; break; }
    if (cursor >= end && end !== '\0') { exhausted = true; break; }
  }
  S.cursor = cursor;
  const ul = $('#children');
  for (const child of found) {
    const label = showKey(child.key.slice(prefix.length));
    if (child.dir) {
      const li = el('li', { class: 'dir', 'data-key': showKey(child.key), onclick: () => browse(child.key) },
        el('span', { class: 'name' }, label), el('span', { class: 'count' }, '…'));
      ul.append(li);
      count(child.key).then((n) => { li.querySelector('.count').textContent = String(n); });
    } else {
      ul.append(el('li', { class: 'key', 'data-key': showKey(child.key), onclick: () => openKey(child.key) },
        el('span', { class: 'name' }, label)));
    }
  }
  $('#more').hidden = exhausted;
}

// -- keys: one key ------------------------------------------------------------
let ttlTimer = null;
async function openKey(key) {
  S.selected = key;
  for (const li of document.querySelectorAll('#children li')) {
    li.classList.toggle('selected', li.dataset.key === showKey(key));
  }
  $('#editor').hidden = true;
  $('#history').hidden = true;
  $('#diff').hidden = true;
  try {
    const r = await range(key);
    const kv = (r.kvs || [])[0];
    if (!kv) {
      $('#key-detail').hidden = true;
      $('#key-empty').hidden = false;
      $('#key-empty').textContent = `"${showKey(key)}" does not exist (any more).`;
      return;
    }
    S.kv = kv;
    showError(null);
    await showKv(kv);
  } catch (e) { showError(e); }
}
async function showKv(kv) {
  const key = fromB64(kv.key);
  $('#key-empty').hidden = true;
  $('#key-detail').hidden = false;
  $('#key-name').textContent = showKey(key);
  const [format, text] = render(fromB64(kv.value));
  $('#value-format').textContent = format;
  $('#value').textContent = text;
  const rows = [
    ['create revision', kv.create_revision],
    ['mod revision', kv.mod_revision],
    ['version', kv.version],
    ['lease', kv.lease ? hexId(kv.lease) : 'none'],
  ];
  const ttl = el('span', { id: 'lease-ttl' }, '');
  if (kv.lease) rows.push(['lease TTL', ttl]);
  metaRows($('#key-meta'), rows);
  clearInterval(ttlTimer);
  if (kv.lease) {
    try {
      const t = await call('/v3/lease/timetolive', { ID: kv.lease });
      let left = Number(t.TTL);
      const tick = () => { ttl.textContent = left > 0 ? `${left}s left (granted ${t.grantedTTL}s)` : 'expired'; left--; };
      tick();
      ttlTimer = setInterval(tick, 1000);
    } catch (e) { ttl.textContent = e.message; }
  }
  const w = canWrite(key);
  $('#edit').hidden = !w;
  $('#delete').hidden = !w;
}
// keepLease: an edit or a restore leaves the key on its lease (etcd's
// ignore_lease) instead of detaching it, as a plain put would.
async function put(key, value, keepLease) {
  await call('/v3/kv/put', { key: btoa(key), value: btoa(value), ignore_lease: keepLease || undefined });
}
function editKey(isNew) {
  $('#editor').hidden = false;
  $('#editor-title').textContent = isNew ? 'New key' : 'Edit value';
  $('#editor-key').value = isNew ? showKey(S.prefix) : showKey(S.selected);
  $('#editor-key').disabled = !isNew;
  $('#editor-value').value = isNew ? '' : (asText(fromB64(S.kv.value)) ?? '');
}
async function saveEditor() {
  const key = $('#editor-key').disabled ? S.selected : toBin($('#editor-key').value);
  try {
    const existing = $('#editor-key').disabled && S.kv && S.kv.lease;
    await put(key, toBin($('#editor-value').value), !!existing);
    $('#editor').hidden = true;
    await browse(S.prefix);
    await openKey(key);
  } catch (e) { showError(e); }
}
async function deleteKey() {
  if (!confirm(`Delete "${showKey(S.selected)}"?`)) return;
  try {
    await call('/v3/kv/deleterange', { key: btoa(S.selected) });
    $('#key-detail').hidden = true;
    await browse(S.prefix);
  } catch (e) { showError(e); }
}

// -- keys: history and diff ---------------------------------------------------
// The versions of the key's current life still kept: read the key at one
// revision before each mod revision, back to its creation or to the
// compaction. Entries: {mod_revision, version, value} or {mod_revision, deleted}.
async function loadHistory() {
  const key = S.selected;
  const out = [S.kv];
  let note = '';
  let kv = S.kv;
  while (Number(kv.version) > 1 && out.length < 200) {
    try {
      const r = await range(key, undefined, { revision: String(Number(kv.mod_revision) - 1) });
      const prev = (r.kvs || [])[0];
      if (!prev) break;
      out.push(prev);
      kv = prev;
    } catch (e) {
      note = `older versions are compacted (${e.message})`;
      break;
    }
  }
  if (!note && Number(kv.version) > 1) note = 'older versions not shown';
  S.history = out;
  // Only a key created after revision 1 may have had earlier lives.
  $('#history-earlier').hidden = !(Number(kv.version) === 1 && Number(kv.create_revision) > 1);
  showHistory(note);
}
function showHistory(note) {
  const out = S.history;
  const w = canWrite(S.selected);
  const puts = out.filter((h) => !h.deleted);
  const tbody = $('#history-table tbody');
  tbody.replaceChildren(...out.map((h, i) => {
    if (h.deleted) {
      return el('tr', { class: 'deleted', 'data-rev': h.mod_revision }, el('td', {}), el('td', {}),
        el('td', {}, h.mod_revision), el('td', {}, ''), el('td', { class: 'del' }, '(deleted)'), el('td', {}));
    }
    const [, text] = render(fromB64(h.value));
    return el('tr', { 'data-rev': h.mod_revision },
      el('td', {}, el('input', { type: 'radio', name: 'diff-a', value: String(i), checked: h === (puts[1] || puts[0]) })),
      el('td', {}, el('input', { type: 'radio', name: 'diff-b', value: String(i), checked: i === 0 })),
      el('td', {}, h.mod_revision), el('td', {}, h.version),
      el('td', {}, text.length > 80 ? text.slice(0, 80) + '…' : text),
      el('td', {}, i > 0 && w ? el('button', { class: 'restore write', onclick: () => restore(h) }, 'Restore this revision') : ''));
  }));
  $('#history-note').textContent = note;
  $('#history').hidden = false;
}
// The key's earlier lives, before it was last created: a watch from the
// oldest revision still kept replays its events, up to the current life's
// creation (the event that ends the replay). Costs the server a scan of the
// revisions in between, hence a button rather than always.
async function loadEarlier() {
  const key = S.selected;
  const created = Number(S.kv.create_revision);
  let start = 1;
  let events = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), 15000);
    let compacted = 0;
    events = [];
    try {
      const body = { create_request: { key: btoa(key), start_revision: String(start) } };
      const resp = await fetch('/v3/watch', { method: 'POST', headers: headers(), body: JSON.stringify(body), signal: abort.signal });
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buf = '';
      let done = false;
      while (!done) {
        const chunk = await reader.read();
        if (chunk.done) break;
        buf += decoder.decode(chunk.value, { stream: true });
        let nl;
        while (!done && (nl = buf.indexOf('\n')) >= 0) {
          const msg = JSON.parse(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          if (msg.error) throw new ApiError(msg.error.message, msg.error.code);
          const r = msg.result || {};
          if (Number(r.compact_revision || 0) > 0) { compacted = Number(r.compact_revision); done = true; break; }
          if (r.canceled) throw new Error('watch cancelled: ' + (r.cancel_reason || ''));
          for (const ev of r.events || []) {
            if (Number(ev.kv.mod_revision) >= created) { done = true; break; }
            events.push(ev);
          }
        }
      }
    } catch (e) {
      if (e.name === 'AbortError') throw new Error('the replay of earlier revisions took too long');
      throw e;
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
    if (!compacted) break;
    start = compacted;
    if (start >= created) break;
  }
  const earlier = events.reverse().map((ev) => ((ev.type || 'PUT') === 'DELETE'
    ? { mod_revision: ev.kv.mod_revision, deleted: true } : ev.kv));
  S.history = S.history.concat(earlier);
  $('#history-earlier').hidden = true;
  showHistory(earlier.length ? `revisions before ${created}: earlier lives of the key`
    : `nothing kept before revision ${created}`);
}
async function restore(h) {
  if (!confirm(`Put the value of revision ${h.mod_revision} back?`)) return;
  try {
    await put(S.selected, fromB64(h.value), !!S.kv.lease);
    await openKey(S.selected);
    await loadHistory();
  } catch (e) { showError(e); }
}
// A line diff (longest common subsequence): [[op, line]], op in ' ', '+', '-'.
function diffLines(a, b) {
  const x = a.split('\n');
  const y = b.split('\n');
  if (x.length * y.length > 4e6) return [...x.map((l) => ['-', l]), ...y.map((l) => ['+', l])];
  const n = x.length;
  const m = y.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) { out.push([' ', x[i]]); i++; j++; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push(['-', x[i++]]);
    else out.push(['+', y[j++]]);
  }
  while (i < n) out.push(['-', x[i++]]);
  while (j < m) out.push(['+', y[j++]]);
  return out;
}
const CLASS = { ' ': 'same', '+': 'add', '-': 'del' };
function diffNodes(a, b) {
  return diffLines(a, b).map(([op, line]) => el('span', { class: CLASS[op] }, op + ' ' + line));
}
function showDiff() {
  const a = document.querySelector('input[name=diff-a]:checked');
  const b = document.querySelector('input[name=diff-b]:checked');
  if (!a || !b) return;
  const ha = S.history[Number(a.value)];
  const hb = S.history[Number(b.value)];
  const pre = $('#diff');
  pre.replaceChildren(el('span', { class: 'same' }, `revision ${ha.mod_revision} → revision ${hb.mod_revision}`),
    ...diffNodes(render(fromB64(ha.value))[1], render(fromB64(hb.value))[1]));
  pre.hidden = false;
}

// -- live watch ---------------------------------------------------------------
function stopWatch() {
  if (S.watch) S.watch.abort.abort();
  S.watch = null;
  $('#watch-start').disabled = false;
  $('#watch-stop').disabled = true;
  $('#watch-pause').disabled = true;
  $('#watch-pause').textContent = 'Pause';
}
async function startWatch(ev) {
  ev.preventDefault();
  stopWatch();
  const prefix = toBin($('#watch-prefix').value);
  const w = { abort: new AbortController(), paused: false, queue: [] };
  S.watch = w;
  $('#watch-start').disabled = true;
  $('#watch-stop').disabled = false;
  $('#watch-pause').disabled = false;
  const status = $('#watch-status');
  status.textContent = 'connecting…';
  const create = { create_request: { key: btoa(prefix || '\0'), range_end: btoa(prefix ? prefixEnd(prefix) : '\0'), prev_kv: true } };
  try {
    const resp = await fetch('/v3/watch', { method: 'POST', headers: headers(), body: JSON.stringify(create), signal: w.abort.signal });
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) onWatchMessage(w, JSON.parse(line));
      }
    }
    if (buf.trim()) onWatchMessage(w, JSON.parse(buf));
    if (S.watch === w) { status.textContent = 'the watch ended'; stopWatch(); }
  } catch (e) {
    if (S.watch === w) { status.textContent = 'watch failed: ' + e.message; stopWatch(); }
  }
}
function onWatchMessage(w, msg) {
  if (msg.error) {
    $('#watch-status').textContent = 'watch failed: ' + (msg.error.message || JSON.stringify(msg.error));
    if (S.authOn && AUTH_ERRORS.includes(msg.error.message)) needLogin(msg.error.message);
    return;
  }
  const r = msg.result || {};
  if (r.created) {
    $('#watch-status').textContent = `watching from revision ${Number(r.header.revision) + 1}`;
  }
  if (r.canceled) {
    $('#watch-status').textContent = 'watch cancelled: ' + (r.cancel_reason || '');
    return;
  }
  for (const ev of r.events || []) {
    if (w.paused) { w.queue.push(ev); $('#watch-status').textContent = `paused, ${w.queue.length} event(s) waiting`; }
    else addEvent(ev);
  }
}
function valueCell(ev) {
  const now = ev.kv && ev.kv.value ? render(fromB64(ev.kv.value))[1] : '';
  const before = ev.prev_kv && ev.prev_kv.value ? render(fromB64(ev.prev_kv.value))[1] : '';
  if (!ev.prev_kv) return [el('span', { class: 'add' }, now)];
  if ((ev.type || 'PUT') === 'DELETE') return [el('span', { class: 'del' }, before)];
  if (!before.includes('\n') && !now.includes('\n')) {
    return [el('span', { class: 'del' }, before), ' → ', el('span', { class: 'add' }, now)];
  }
  return [el('pre', { class: 'diff' }, diffNodes(before, now))];
}
function addEvent(ev) {
  const type = ev.type || 'PUT';
  const key = showKey(fromB64(ev.kv.key));
  const row = el('tr', { class: `event ${type}`, 'data-type': type },
    el('td', {}, ev.kv.mod_revision), el('td', { class: 'type' }, type),
    el('td', { class: 'key' }, key), el('td', { class: 'value' }, valueCell(ev)));
  applyFilter(row);
  const tbody = $('#watch-events tbody');
  tbody.prepend(row);
  while (tbody.children.length > 1000) tbody.lastChild.remove();
}
function applyFilter(row) {
  const text = $('#watch-filter').value;
  const type = $('#watch-type').value;
  row.hidden = (type && row.dataset.type !== type) || (text && !row.textContent.includes(text));
}
function togglePause() {
  const w = S.watch;
  if (!w) return;
  w.paused = !w.paused;
  $('#watch-pause').textContent = w.paused ? 'Resume' : 'Pause';
  if (!w.paused) {
    const queued = w.queue.splice(0);
    queued.forEach(addEvent);
    $('#watch-status').textContent = 'watching';
  } else {
    $('#watch-status').textContent = 'paused, 0 event(s) waiting';
  }
}

// -- leases -------------------------------------------------------------------
let leaseTimer = null;
async function loadLeases() {
  try {
    const r = await call('/v3/lease/leases', {});
    const all = r.leases || [];
    const rows = [];
    for (const l of all.slice(0, MAX_LEASES)) {
      try {
        const t = await call('/v3/lease/timetolive', { ID: l.ID, keys: true });
        rows.push({ id: l.ID, ttl: Number(t.TTL), granted: t.grantedTTL, keys: (t.keys || []).map(fromB64) });
      } catch (e) { rows.push({ id: l.ID, ttl: NaN, granted: '?', keys: [], error: e.message }); }
    }
    S.leases = rows;
    const tbody = $('#leases tbody');
    tbody.replaceChildren(...rows.map((l) => el('tr', { class: 'lease', 'data-id': hexId(l.id) },
      el('td', {}, hexId(l.id)), el('td', { class: 'ttl' }, ''), el('td', {}, l.granted + 's'),
      el('td', {}, l.error || l.keys.map(showKey).join(', ') || '(no keys)'),
      el('td', {}, (isAdmin() || (l.keys.length && l.keys.every(canWrite)))
        ? el('button', { class: 'revoke write danger', onclick: () => revoke(l) }, 'Revoke') : ''))));
    $('#leases-note').textContent = all.length > MAX_LEASES
      ? `showing ${MAX_LEASES} of ${all.length} leases` : `${all.length} lease(s)`;
    tickLeases();
    clearInterval(leaseTimer);
    leaseTimer = setInterval(tickLeases, 1000);
    showError(null);
  } catch (e) { showError(e); }
}
function tickLeases() {
  for (const row of document.querySelectorAll('#leases tr.lease')) {
    const l = S.leases.find((x) => hexId(x.id) === row.dataset.id);
    if (!l) continue;
    row.querySelector('.ttl').textContent = Number.isNaN(l.ttl) ? '?' : l.ttl > 0 ? l.ttl + 's' : 'expired';
    if (l.ttl > 0) l.ttl--;
  }
}
async function revoke(l) {
  if (!confirm(`Revoke lease ${hexId(l.id)} and delete its ${l.keys.length} key(s)?`)) return;
  try {
    await call('/v3/lease/revoke', { ID: l.id });
    await loadLeases();
  } catch (e) { showError(e); }
}

// -- cluster ------------------------------------------------------------------
async function loadCluster() {
  try {
    const [st, alarms, members] = await Promise.all([
      call('/v3/maintenance/status', {}),
      call('/v3/maintenance/alarm', { action: 'GET' }),
      call('/console/api/members', {}),
    ]);
    metaRows($('#cluster-summary'), [
      ['member', hexId(st.header.member_id)],
      ['version', st.version],
      ['leader', st.leader && st.leader !== '0' ? hexId(st.leader) : 'none'],
      ['raft term', st.raftTerm],
      ['raft index', st.raftIndex],
      ['raft applied index', st.raftAppliedIndex],
      ['revision', st.header.revision],
      ['db size', bytes(st.dbSize)],
      ['db size in use', bytes(st.dbSizeInUse)],
    ]);
    const list = alarms.alarms || [];
    $('#alarms').replaceChildren(list.length
      ? el('ul', {}, list.map((a) => el('li', { class: 'err' }, `${a.alarm || 'NONE'} on member ${hexId(a.memberID)}`)))
      : el('span', { class: 'healthy' }, 'none'));
    $('#members tbody').replaceChildren(...members.members.map((m) => el('tr', { class: 'member' },
      el('td', {}, m.name || '(unstarted)'), el('td', {}, hexId(m.ID)), el('td', {}, m.clientURLs.join(', ')),
      el('td', { class: m.healthy ? 'healthy' : 'unhealthy' }, m.healthy ? 'healthy' : 'unhealthy: ' + m.error),
      el('td', {}, m.isLearner ? 'learner' : m.healthy && m.leader === m.ID ? 'leader' : 'follower'),
      el('td', {}, m.raftTerm || ''), el('td', {}, m.raftIndex || ''),
      el('td', {}, m.healthy ? bytes(m.dbSize) : ''), el('td', {}, m.healthy ? bytes(m.dbSizeInUse) : ''))));
    showError(null);
  } catch (e) { showError(e); }
}
async function sampleMetrics() {
  try {
    const m = await call('/console/api/metrics', {});
    S.samples.push(m);
    if (S.samples.length > 61) S.samples.shift();
  } catch (e) { return; }
  const rate = [];
  const watch = [];
  const fsync = [];
  for (let i = 1; i < S.samples.length; i++) {
    const a = S.samples[i - 1];
    const b = S.samples[i];
    const dt = b.time - a.time || 1;
    rate.push((b.puts_total - a.puts_total) / dt);
    watch.push(b.watchers);
    const n = b.wal_fsync_count - a.wal_fsync_count;
    fsync.push(n > 0 ? (1000 * (b.wal_fsync_seconds_sum - a.wal_fsync_seconds_sum)) / n : 0);
  }
  chart($('#chart-puts'), rate, (v) => v.toFixed(1));
  chart($('#chart-watch'), watch, (v) => v.toFixed(0));
  chart($('#chart-fsync'), fsync, (v) => v.toFixed(2));
}
function chart(canvas, values, fmt) {
  const ctx = canvas.getContext('2d');
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, w, h);
  const max = Math.max(1, ...values) * 1.1;
  ctx.strokeStyle = '#e2e4ea';
  ctx.beginPath();
  for (let g = 0; g <= 4; g++) { const y = 10 + ((h - 20) * g) / 4; ctx.moveTo(0, y); ctx.lineTo(w, y); }
  ctx.stroke();
  ctx.fillStyle = '#667';
  ctx.font = '11px sans-serif';
  ctx.fillText(fmt(max), 4, 20);
  ctx.fillText('now: ' + (values.length ? fmt(values[values.length - 1]) : '-'), w - 80, 20);
  if (values.length < 2) return;
  ctx.strokeStyle = '#2457b5';
  ctx.lineWidth = 2;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = (w * i) / 59;
    const y = h - 10 - ((h - 20) * v) / max;
    if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
  });
  ctx.stroke();
}

// -- wiring -------------------------------------------------------------------
let clusterTimer = null;
function showTab(name) {
  for (const b of document.querySelectorAll('nav .tab')) b.classList.toggle('active', b.dataset.tab === name);
  for (const p of document.querySelectorAll('main .panel')) p.hidden = p.id !== 'tab-' + name;
  clearInterval(clusterTimer);
  if (name === 'leases') loadLeases();
  if (name === 'cluster') {
    loadCluster();
    sampleMetrics();
    clusterTimer = setInterval(() => { sampleMetrics(); loadCluster(); }, 2000);
  }
}
async function main() {
  for (const b of document.querySelectorAll('nav .tab')) b.addEventListener('click', () => showTab(b.dataset.tab));
  $('#login-form').addEventListener('submit', login);
  $('#logout').addEventListener('click', logout);
  $('#prefix-form').addEventListener('submit', (ev) => { ev.preventDefault(); browse(toBin($('#prefix-input').value)); });
  $('#more').addEventListener('click', () => more().catch(showError));
  $('#new-key').addEventListener('click', () => editKey(true));
  $('#edit').addEventListener('click', () => editKey(false));
  $('#editor-save').addEventListener('click', saveEditor);
  $('#editor-cancel').addEventListener('click', () => { $('#editor').hidden = true; });
  $('#delete').addEventListener('click', deleteKey);
  $('#history-btn').addEventListener('click', () => loadHistory().catch(showError));
  $('#history-earlier').addEventListener('click', () => loadEarlier().catch(showError));
  $('#diff-btn').addEventListener('click', showDiff);
  $('#watch-form').addEventListener('submit', startWatch);
  $('#watch-stop').addEventListener('click', () => { stopWatch(); $('#watch-status').textContent = 'stopped'; });
  $('#watch-pause').addEventListener('click', togglePause);
  $('#watch-clear').addEventListener('click', () => $('#watch-events tbody').replaceChildren());
  const refilter = () => document.querySelectorAll('#watch-events tr.event').forEach(applyFilter);
  $('#watch-filter').addEventListener('input', refilter);
  $('#watch-type').addEventListener('change', refilter);
  $('#leases-refresh').addEventListener('click', loadLeases);
  const hash = decodeURIComponent(location.hash.slice(1));
  if (hash) S.prefix = toBin(hash);
  const ok = await detectAuth();
  if (S.authOn && !ok) { needLogin(''); return; }
  try { await enter(); } catch (e) {
    if (S.authOn) needLogin(e.message); else showError(e);
  }
}
main();
