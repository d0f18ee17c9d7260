// End-to-end: a real browser's EventSource against herald (issue 6, "Done
// when": Debian's headless Chromium receives a published notification and,
// after herald closes the connection, reconnects by itself and resumes with
// Last-Event-ID).
//
//   HERALD_BIN=build-asan/herald node tests/browser/sse_resume.mjs
//
// Run by ctest (label "browser"), which sets HERALD_BIN. Needs Debian's
// chromium at /usr/bin/chromium and playwright-core in tests/browser/
// node_modules (scripts/deps installs both; nothing is downloaded here).
//
// The scenario:
//   1. herald starts (embedded SQLite in a temp dir, sse.retry_ms 500, CORS
//      allowing the page's origin); a user registers (the first user is the
//      admin of their organization, so they may publish to themselves).
//   2. A tiny Node server serves page.html on another port; the page opens
//      new EventSource(herald + '/api/notifications/stream?token=...').
//   3. Event A is published: the page receives it.
//   4. herald gets SIGTERM (it closes its streams and exits); the page sees
//      an error. herald stays down until the browser's own reconnect attempt
//      has been refused once. Nothing is published while herald is down.
//   5. herald starts again on the same port with the same config and
//      database; B and C are published at once. The browser reconnects by
//      itself with Last-Event-ID: A and receives B then C, once each, never A
//      again. Then D is published: once D is there, every byte herald sent
//      before it is too, so "exactly A, B, C, D" needs no waiting for
//      duplicates that might still come.
// Checked on the way: the stream responses carry Access-Control-Allow-Origin
// (the browser would refuse the stream otherwise), the reconnect request
// carries Last-Event-ID, herald counted one replay, and both herald runs
// exit 0 on SIGTERM with no sanitizer report in their logs.
//
// Exits 0 on success, 1 with a message (and the herald logs) on failure.
// Everything started is stopped, and the temp dir removed, on any exit
// (HERALD_TEST_KEEP=1 keeps the temp dir).

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
// The flags Debian's Chromium needs here: no sandbox (tests run as root), no
// GPU, and no network traffic of its own (a closed network refuses it, many
// connections at a time). Headless and a fresh profile come from the launch.
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const RETRY_MS = 500;
const START_TIMEOUT_MS = 20000; // herald under ASan: < 1 s idle, ~8 s seen on a loaded machine
const STOP_TIMEOUT_MS = 15000;
const WAIT_TIMEOUT_MS = 15000; // any one expected browser-side observation
const POLL_MS = 25;
const SANITIZER_RE = /ERROR: (AddressSanitizer|LeakSanitizer)|WARNING: ThreadSanitizer|SUMMARY: (Address|Leak|Thread|UndefinedBehavior)Sanitizer|: runtime error: /;

const t0 = Date.now();
const say = (msg) => console.log(`[${((Date.now() - t0) / 1000).toFixed(2)}s] ${msg}`);
class TestFailure extends Error {}
function check(cond, msg) {
  if (!cond) throw new TestFailure(msg);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls @fn (sync or async) until it returns a truthy value; fails with
 *  @what (a string or a function giving one) after @timeoutMs. */
async function waitFor(what, fn, timeoutMs = WAIT_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) {
      throw new TestFailure(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    }
    await sleep(POLL_MS);
  }
}

// ---- everything to undo on exit --------------------------------------------

const state = { tmp: null, heralds: [], pageServer: null, context: null, interrupted: false };

async function teardown() {
  if (state.context) {
    const ctx = state.context;
    state.context = null;
    await Promise.race([ctx.close().catch(() => {}), sleep(5000)]);
  }
  for (const h of state.heralds) {
    if (h.exit === undefined) {
      try { process.kill(h.child.pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
  if (state.pageServer) {
    state.pageServer.closeAllConnections?.();
    state.pageServer.close();
    state.pageServer = null;
  }
  if (state.tmp && !process.env.HERALD_TEST_KEEP) {
    try { fs.rmSync(state.tmp, { recursive: true, force: true, maxRetries: 3 }); } catch (err) {
      console.error(`sse_resume: could not remove ${state.tmp}: ${err.message}`);
    }
  } else if (state.tmp) {
    say(`kept ${state.tmp}`);
  }
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.error(`sse_resume: ${sig}, stopping`);
    state.interrupted = true; // what fails from here on is the teardown's doing
    teardown().finally(() => process.exit(1));
  });
}

// ---- herald ---------------------------------------------------------------

/** A port that is free now and outside the kernel's ephemeral range, so no
 *  outgoing connection (the browser's own retries among them) can take it
 *  while herald is down between its two runs. */
async function pickPort() {
  let lo = 32768;
  try {
    lo = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || lo;
  } catch { /* not Linux: the default range */ }
  const base = Math.max(1024, Math.min(20000, lo - 2000));
  for (let i = 0; i < 50; i++) {
    const port = base + Math.floor(Math.random() * Math.max(1000, lo - base));
    const ok = await new Promise((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new TestFailure('no free port below the ephemeral range');
}

/** herald's environment: ours without HERALD_* (as the C harness does), so
 *  no variable of the caller's overrides the test's config. */
function heraldEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('HERALD_')) env[k] = v;
  }
  return env;
}

function readLog(h) {
  try { return fs.readFileSync(h.logPath, 'utf8'); } catch { return ''; }
}

/** Starts `herald serve` on @port; resolves once it logged "listening" and
 *  /healthz answers 200. The run is recorded in state.heralds. */
async function startHerald(bin, configPath, port) {
  const n = state.heralds.length + 1;
  const logPath = path.join(state.tmp, `herald-${n}.log`);
  const fd = fs.openSync(logPath, 'w');
  // setpriv --pdeathsig: herald dies with this process even if it is killed
  // outright (the C harness does the same with prctl).
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', bin, 'serve', '--config', configPath,
    '--listen', `127.0.0.1:${port}`], { cwd: state.tmp, env: heraldEnv(), stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  const h = { n, child, logPath, port, exit: undefined };
  state.heralds.push(h);
  h.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      h.exit = code !== null ? code : 128 + (os.constants.signals[signal] || 0);
      resolve(h.exit);
    });
    child.on('error', (err) => { h.exit = 255; h.spawnError = err; resolve(255); });
  });
  await waitFor(`herald run ${n} to log "listening"`, () => {
    if (h.exit !== undefined) {
      throw new TestFailure(`herald run ${n} exited with ${h.exit} before listening${h.spawnError ? `: ${h.spawnError.message}` : ''}`);
    }
    return readLog(h).split('\n').some((l) => l.includes('"msg":"listening"'));
  }, START_TIMEOUT_MS);
  await waitFor(`herald run ${n} GET /healthz 200`, async () => {
    const r = await request(port, 'GET', '/healthz').catch(() => null);
    return r && r.status === 200;
  }, START_TIMEOUT_MS);
  return h;
}

/** SIGTERM, then waits for the exit; fails unless herald exits 0 in time. */
async function stopHerald(h) {
  if (h.exit !== undefined) throw new TestFailure(`herald run ${h.n} had already exited with ${h.exit}`);
  const started = Date.now();
  h.child.kill('SIGTERM');
  const code = await Promise.race([h.exited, sleep(STOP_TIMEOUT_MS).then(() => 'timeout')]);
  if (code === 'timeout') {
    throw new TestFailure(`herald run ${h.n} did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM`);
  }
  check(code === 0, `herald run ${h.n} exited with ${code} after SIGTERM (expected 0)`);
  return Date.now() - started;
}

/** One HTTP request on its own connection (no keep-alive pool holding a
 *  connection to herald across its restart). Resolves {status, headers, body, json}. */
function request(port, method, urlPath, { body, token, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const h = { ...headers, Connection: 'close' };
    if (data) { h['Content-Type'] = 'application/json'; h['Content-Length'] = data.length; }
    if (token) h.Authorization = `Bearer ${token}`;
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers: h, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, body: text, json });
      });
      res.on('error', reject);
    });
    req.setTimeout(10000, () => req.destroy(new Error(`${method} ${urlPath}: no answer within 10 s`)));
    req.on('error', reject);
    req.end(data);
  });
}

async function publish(port, token, userId, label) {
  const r = await request(port, 'POST', '/api/notifications', {
    token,
    body: { user_id: userId, type: 'browser.test', title: `event ${label}`, data: { seq: label } },
  });
  check(r.status === 201 && r.json && Number.isSafeInteger(r.json.id),
    `publish ${label}: expected 201 with an id, got ${r.status} ${r.body}`);
  return { label, id: r.json.id, at: Date.now() };
}

async function metric(port, name) {
  const r = await request(port, 'GET', '/metrics');
  check(r.status === 200, `GET /metrics: ${r.status}`);
  const line = r.body.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : undefined;
}

// ---- the page's server ----------------------------------------------------

async function startPageServer() {
  const html = fs.readFileSync(path.join(HERE, 'page.html'));
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && new URL(req.url, 'http://x').pathname === '/page.html') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(html);
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found\n');
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  state.pageServer = server;
  return `http://127.0.0.1:${server.address().port}`;
}

// ---- the test ---------------------------------------------------------------

async function preflight() {
  const major = Number(process.versions.node.split('.')[0]);
  check(major >= 20, `Node.js ${process.versions.node}: playwright-core needs 20 or newer`);
  const bin = process.env.HERALD_BIN;
  check(bin, 'HERALD_BIN is not set (run through ctest, or set it to a built herald)');
  try { fs.accessSync(bin, fs.constants.X_OK); } catch {
    throw new TestFailure(`HERALD_BIN=${bin} is not executable`);
  }
  try { fs.accessSync(CHROMIUM, fs.constants.X_OK); } catch {
    throw new TestFailure(`${CHROMIUM} is missing: run scripts/deps (Debian package chromium)`);
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (err) {
    throw new TestFailure(`playwright-core is not installed in ${HERE}/node_modules: run scripts/deps (${err.message})`);
  }
  return { bin, chromium };
}

// What the browser did, printed when the test fails.
const diag = { page: null, console: [], requests: [] };
// The events published so far, in order: {label, id, at}.
const published = [];

/** The page's window.sse, checked against what was published: fails at once
 *  on what can never come right (an event that is not the next published
 *  one: a duplicate, a gap, a reset; or an EventSource that gave up). */
async function observe(page) {
  const s = await page.evaluate(() => window.sse);
  diag.page = s;
  s.events.forEach((e, i) => {
    const w = published[i];
    check(w && e.type === 'notification' && e.id === String(w.id),
      `the page's event ${i + 1} is ${e.type}#${e.id}; expected ` +
      `${w ? `notification#${w.id} (${w.label})` : 'none (nothing more was published)'}`);
  });
  check(!s.log.some((l) => l.readyState === 2),
    'the EventSource gave up (readyState CLOSED) instead of reconnecting');
  return s;
}

const requestsSummary = () => diag.requests.map((r) =>
  `${r.method} ${r.status ?? '-'}${r.failure ? ` ${r.failure}` : ''}${r.headers?.['last-event-id'] ? ` Last-Event-ID: ${r.headers['last-event-id']}` : ''}`);

async function run() {
  const { bin, chromium } = await preflight();
  state.tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-browser-'));

  const origin = await startPageServer();
  const config = {
    dev_mode: true,
    jwt: { secret: randomBytes(36).toString('base64url') }, // 48 characters
    log: { access: true },
    store: { auto_migrate: true, sqlite_path: path.join(state.tmp, 'var', 'herald.db'), pool_size: 2 },
    ratelimit: { enabled: false },
    sse: { retry_ms: RETRY_MS },
    cors: { allowed_origins: [origin] },
  };
  const configPath = path.join(state.tmp, 'herald.json');
  fs.writeFileSync(configPath, JSON.stringify(config, null, 2));

  // The port is free when picked but not held: should something take it
  // before herald binds it, pick another.
  let h, port;
  for (let attempt = 1; !h; attempt++) {
    port = await pickPort();
    try {
      h = await startHerald(bin, configPath, port);
    } catch (err) {
      const failed = state.heralds.pop();
      if (attempt >= 5 || !readLog(failed).includes('Address already in use')) {
        state.heralds.push(failed);
        throw err;
      }
      say(`port ${port} was taken before herald bound it; another`);
    }
  }
  const herald = `http://127.0.0.1:${port}`;
  say(`herald run 1 listening on ${herald}; page served from ${origin}; temp dir ${state.tmp}`);

  const reg = await request(port, 'POST', '/api/auth/register', {
    body: { email: 'browser@example.com', password: 'a browser test passphrase', username: 'browser' },
  });
  check(reg.status === 201 && reg.json?.access_token && reg.json?.user?.id,
    `register: expected 201 with tokens, got ${reg.status} ${reg.body}`);
  const token = reg.json.access_token;
  const userId = reg.json.user.id;
  check(reg.json.user.role === 'admin', `register: the first user should be admin, got ${reg.json.user.role}`);
  const publishNext = async (label) => {
    const ev = await publish(port, token, userId, label);
    published.push(ev);
    return ev;
  };

  // ---- the browser ------------------------------------------------------------
  const profile = path.join(state.tmp, 'chromium-profile'); // a fresh --user-data-dir
  state.context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30000,
  });
  const page = state.context.pages()[0] || await state.context.newPage();
  page.on('console', (m) => diag.console.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => diag.console.push(`pageerror: ${e.message}`));
  // Every request the page makes to herald: what the browser sent, the
  // answer's status and headers, or how it failed.
  page.on('request', (req) => {
    if (!req.url().startsWith(herald)) return;
    const rec = { method: req.method(), url: req.url(), headers: null, status: null, respHeaders: null, failure: null };
    diag.requests.push(rec);
    req.allHeaders().then((hd) => { rec.headers = hd; }, () => {});
    req.response().then(async (res) => {
      if (!res) return;
      rec.status = res.status();
      rec.respHeaders = await res.allHeaders().catch(() => res.headers());
    }, () => {});
  });
  page.on('requestfailed', (req) => {
    const rec = diag.requests.findLast((r) => r.url === req.url() && !r.failure);
    if (rec) rec.failure = req.failure()?.errorText || 'failed';
  });

  const streamUrl = `${herald}/api/notifications/stream?token=${encodeURIComponent(token)}`;
  await page.goto(`${origin}/page.html?stream=${encodeURIComponent(streamUrl)}`);
  await waitFor('the page\'s EventSource to open',
    async () => (await observe(page)).log.some((l) => l.kind === 'open'));
  say('the page\'s EventSource is open');

  // ---- A, live ----------------------------------------------------------------------
  const A = await publishNext('A');
  await waitFor(`event A (id ${A.id}) in the page`, async () => (await observe(page)).events.length === 1);
  say(`A (id ${A.id}) received`);

  // ---- herald goes away ---------------------------------------------------------------
  const stopMs = await stopHerald(h);
  say(`herald run 1 exited 0, ${stopMs} ms after SIGTERM`);
  const down = await waitFor('the page to see the stream end (an error event after the open)', async () => {
    const s = await observe(page);
    return s.log.length >= 2 ? s : null;
  });
  check(down.log[1].kind === 'error' && down.log[1].readyState === 0,
    'after herald closed the stream the page should see an error with readyState CONNECTING (0)');
  say('the page saw the error; its EventSource is reconnecting by itself');
  // Stay down until the browser has tried once and been refused, so the
  // resume always follows a failed attempt (herald down for longer than
  // sse.retry_ms), not only an immediate reconnect.
  const failedBefore = diag.requests.filter((r) => r.failure).length;
  await waitFor('a refused reconnect attempt while herald is down', async () => {
    const s = await observe(page);
    return s.log.filter((l) => l.kind === 'error').length >= 2 ||
      diag.requests.filter((r) => r.failure).length > failedBefore;
  }, RETRY_MS + WAIT_TIMEOUT_MS);
  say('the browser\'s own reconnect attempt was refused; starting herald again');

  // ---- herald again: same port, config and database; B and C at once -------------
  h = await startHerald(bin, configPath, port);
  const B = await publishNext('B');
  const C = await publishNext('C');
  say(`herald run 2 listening; published B (id ${B.id}) and C (id ${C.id})`);
  const back = await waitFor('the EventSource to reconnect and receive B and C',
    async () => { const s = await observe(page); return s.events.length === 3 ? s : null; });
  const reopenedAt = back.log.filter((l) => l.kind === 'open')[1]?.t;
  say(`reconnected; B and C received (${reopenedAt > C.at
    ? 'the reconnect came after both were stored: both from the replay'
    : 'the reconnect came before C\'s 201: replay and live'})`);

  // D: once it is in the page, nothing herald sent before it can still be on
  // its way, so a duplicate of A, B or C would be there by now.
  const D = await publishNext('D');
  const final = await waitFor(`event D (id ${D.id}) in the page`,
    async () => { const s = await observe(page); return s.events.length === 4 ? s : null; });

  // ---- what the page saw ----------------------------------------------------------
  final.events.forEach((e, i) => {
    const w = published[i];
    let d;
    try { d = JSON.parse(e.data); } catch { throw new TestFailure(`event ${w.label}: data is not JSON: ${e.data}`); }
    check(d.id === w.id && d.user_id === userId && d.type === 'browser.test' &&
      d.title === `event ${w.label}` && d.data?.seq === w.label,
    `event ${w.label}: unexpected data ${e.data}`);
  });
  const kinds = final.log.map((l) => l.kind);
  const secondOpen = kinds.indexOf('open', 1);
  check(kinds[0] === 'open' && kinds[1] === 'error' && secondOpen > 1 &&
    kinds.slice(1, secondOpen).every((k) => k === 'error') && secondOpen === kinds.length - 1,
  `the page should see open, error (one per attempt while herald was down), open, and nothing after: ${kinds.join(', ')}`);

  // ---- what went over the wire --------------------------------------------------
  await waitFor('the browser\'s record of both stream responses',
    () => diag.requests.filter((r) => r.respHeaders).length >= 2, 5000);
  const answered = diag.requests.filter((r) => r.method === 'GET' && r.respHeaders);
  check(answered.length === 2, `expected 2 answered stream requests (the first, the reconnect), saw ${answered.length}`);
  for (const [i, r] of answered.entries()) {
    check(r.status === 200, `stream request ${i + 1}: status ${r.status}`);
    check(r.respHeaders['access-control-allow-origin'] === origin,
      `herald bug: stream response ${i + 1} lacks Access-Control-Allow-Origin: ${origin} ` +
      `(headers: ${JSON.stringify(r.respHeaders)})`);
    check((r.respHeaders['content-type'] || '').startsWith('text/event-stream'),
      `stream response ${i + 1}: Content-Type ${r.respHeaders['content-type']}`);
  }
  check(!answered[0].headers?.['last-event-id'], 'the first stream request should carry no Last-Event-ID');
  check(answered[1].headers?.['last-event-id'] === String(A.id),
    `the reconnect should carry Last-Event-ID: ${A.id}; it sent ${JSON.stringify(answered[1].headers)}`);
  const preflights = diag.requests.filter((r) => r.method === 'OPTIONS').length;
  const refused = diag.requests.filter((r) => r.method === 'GET' && r.failure).length;

  const replays = await metric(port, 'herald_sse_replays_total');
  check(replays === 1, `herald run 2 should count one replay (the resume): herald_sse_replays_total = ${replays}`);
  const resets = await metric(port, 'herald_sse_resets_total{reason="replay"}');
  check(!resets, `herald answered the resume with a reset: herald_sse_resets_total{reason="replay"} = ${resets}`);

  await page.evaluate(() => window.sseClose());
  const ctx = state.context;
  state.context = null;
  await ctx.close();
  const stop2 = await stopHerald(h);
  say(`herald run 2 exited 0, ${stop2} ms after SIGTERM`);
  for (const run of state.heralds) {
    const bad = readLog(run).split('\n').filter((l) => SANITIZER_RE.test(l));
    check(bad.length === 0, `herald run ${run.n} logged sanitizer reports:\n${bad.slice(0, 20).join('\n')}`);
  }
  say(`PASS: A, B, C, D = ids ${published.map((w) => w.id).join(', ')}; reconnect with Last-Event-ID ${A.id} ` +
    `after ${refused} refused attempt(s); ${preflights} preflight(s); ${Date.now() - t0} ms in all`);
}

let code = 0;
try {
  await run();
} catch (err) {
  code = 1;
  if (state.interrupted) process.exit(1); // the signal handler tears down and exits
  console.error(`sse_resume: FAIL: ${err instanceof TestFailure ? err.message : err.stack || err}`);
  if (diag.page) {
    console.error(`  the page's log: ${diag.page.log.map((l) => `${l.kind}(readyState ${l.readyState})`).join(', ') || '-'}`);
    console.error(`  the page's events: ${diag.page.events.map((e) => `${e.type}#${e.id} ${e.data}`).join(' | ') || '-'}`);
  }
  if (published.length) console.error(`  published: ${published.map((w) => `${w.label}=${w.id}`).join(', ')}`);
  if (diag.requests.length) console.error(`  the browser's requests to herald: ${requestsSummary().join('; ')}`);
  if (diag.console.length) console.error(`  the page's console:\n    ${diag.console.join('\n    ')}`);
  for (const h of state.heralds) {
    const log = readLog(h);
    const tail = log.length > 8000 ? log.slice(-8000) : log;
    console.error(`---- herald run ${h.n} log (last ${tail.length} bytes; exit ${h.exit ?? 'still running'}) ----\n${tail}---- end ----`);
  }
}
await teardown();
process.exit(code);
