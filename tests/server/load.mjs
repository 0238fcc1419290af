#!/usr/bin/env node
// Load driver for a running `upg serve`: many concurrent streaming clients.
//
//   node load.mjs --url URL [--models a,b] [--clients 64] [--max-tokens 24] [--prompts 8]
//                 [--key K] [--mode check|bench] [--out results.json] [--pid PID] ...
//
// check mode (a test; exit 1 on any failure):
//   0. --burst-rounds bursts of --burst (default 128) simultaneous new connections (GET /health) on
//      the idle server: each must be answered within 3 s, and (for a server on this machine) the
//      kernel's TcpExt ListenOverflows must not grow: a connection dropped by a full listen queue
//      waits for SYN retransmits (1 s, 3 s, ...) or is reset.
//   1. For each of --prompts fixed English prompts and each model, the single-request greedy reply
//      (POST /v1/completions through the openai SDK, temperature 0, max_tokens N), one at a time
//      with nothing else in flight; for models with a chat template also the greedy chat reply to
//      the first --chat-streams prompts.
//   2. --clients concurrent STREAMING completions at once (client i: model i % models, prompt
//      i % prompts) plus --chat-streams concurrent streaming chat requests (spread over the models
//      that have a chat template). Every stream must end with a finish_reason and "data: [DONE]",
//      carry no error event, and give exactly the single-request text, finish_reason and
//      completion token count. The one tolerated difference (reported, not failed; --tie-eps 0
//      makes it fail): at the first differing token the single request's two best candidates were
//      within --tie-eps nats (default 0.05) and the stream took the runner-up, i.e. batched
//      arithmetic flipped a near tie. Listen queue overflows during the burst fail too.
//   3. GET /metrics before and after: once all requests ended (polled for up to --idle-timeout s),
//      for every model upg_kv_cache_blocks_in_use - upg_kv_cache_prefix_blocks == 0 and
//      upg_running_requests == upg_queue_depth == 0.
//   4. With --pid, the server's VmRSS: idle before, peak during (sampled every 100 ms), after;
//      fails when after - idle > --rss-slack-mib (default 64).
//   Prints errors, mismatches, aggregate tokens/s, p50/p99 time to first token.
//
// bench mode (a measurement; exit 1 only when requests failed):
//   For each level of --levels (default 1,8,32) clients, each client sends streaming completions
//   (max_tokens N, ignore_eos unless --no-ignore-eos) to the first model back to back for --seconds
//   (default 20). Reports aggregate generated tokens/s, p50/p99 time to first token, p50/p99
//   inter-token latency (per request: (last token time - first token time) / (tokens - 1)), the
//   server's mean inter-token latency and sequences per engine step (from /metrics), peak RSS with
//   --pid; prints a markdown table and writes JSON to --out.
//
// Other flags: --chat-streams N (check: default 4; 0 = none), --timeout S (per request, default
// 300), --idle-timeout S (default 5), --rss-slack-mib M (default 64), --tie-eps E, --burst N
// (0 = none), --burst-rounds R, --allow-listen-overflow (overflows that failed no request pass),
// --levels 1,8,32, --seconds S; bench on a shared machine: a level during which other processes
// kept more than --max-other-cores (default 0.25) cores busy is measured again, up to --retries
// (default 2) times, each after waiting up to --quiet-wait s (default 120) for quiet. Needs Node >= 18 and the openai package (cd tests/server && npm ci).
import fs from 'node:fs';

let OpenAI;
try {
  ({ default: OpenAI } = await import('openai'));
} catch (e) {
  console.error('FAIL: cannot load the openai package; run `cd tests/server && npm ci` first.\n' + e.message);
  process.exit(1);
}

const PROMPTS = [
  'The history of the city',
  'Once upon a time there was a little girl who',
  'The weather today is',
  'My favourite food is',
  'The best way to learn a new language is',
  'In the morning the old man walked to the market and',
  'Scientists have discovered that',
  'The children played in the garden until',
  'The river flows through the valley and',
  'A good friend is someone who',
  'The train to the capital leaves at',
  'Every winter the village',
  'The teacher asked the class to',
  'When the sun goes down the forest',
  'The new library opened its doors to',
  'Yesterday I found an old letter that',
];

// ---------------------------------------------------------------------------------------------
// Arguments
function usage(msg) {
  if (msg) console.error('load.mjs: ' + msg);
  console.error('usage: node load.mjs --url URL [--models a,b] [--clients 64] [--max-tokens 24] [--prompts 8] ' +
    '[--key K] [--mode check|bench] [--out results.json] [--pid PID] [--seconds 20] [--levels 1,8,32] ' +
    '[--chat-streams 4] [--timeout 300] [--idle-timeout 5] [--rss-slack-mib 64] [--tie-eps 0.05] ' +
    '[--burst 128] [--burst-rounds 3] [--allow-listen-overflow] [--no-ignore-eos] ' +
    '[--max-other-cores 0.25] [--retries 2] [--quiet-wait 120]');
  process.exit(2);
}

function parseArgs(argv) {
  const o = {
    url: 'http://127.0.0.1:18080', models: [], clients: 64, maxTokens: 24, prompts: 8, key: '', mode: 'check',
    out: '', pid: 0, seconds: 20, levels: [1, 8, 32], chatStreams: 4, timeout: 300, idleTimeout: 5, rssSlackMiB: 64,
    ignoreEos: true, tieEps: 0.05, allowListenOverflow: false, burst: 128, burstRounds: 3, maxOtherCores: 0.25, retries: 2, quietWait: 120,
  };
  const num = (name, v, min) => {
    const x = Number(v);
    if (!Number.isFinite(x) || x < min) usage(`${name} must be a number >= ${min}, got ${JSON.stringify(v)}`);
    return x;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') usage();
    if (a === '--no-ignore-eos') { o.ignoreEos = false; continue; }
    if (a === '--allow-listen-overflow') { o.allowListenOverflow = true; continue; }
    if (!a.startsWith('--')) usage(`unexpected argument ${a}`);
    let name = a, v;
    const eq = a.indexOf('=');
    if (eq > 0) { name = a.slice(0, eq); v = a.slice(eq + 1); } else {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      v = argv[++i];
    }
    switch (name) {
      case '--url': o.url = v.replace(/\/+$/, ''); break;
      case '--models': o.models = v.split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--clients': o.clients = Math.floor(num(name, v, 1)); break;
      case '--max-tokens': o.maxTokens = Math.floor(num(name, v, 1)); break;
      case '--prompts': o.prompts = Math.floor(num(name, v, 1)); break;
      case '--key': o.key = v; break;
      case '--mode': if (v !== 'check' && v !== 'bench') usage('--mode is check or bench'); o.mode = v; break;
      case '--out': o.out = v; break;
      case '--pid': o.pid = Math.floor(num(name, v, 1)); break;
      case '--seconds': o.seconds = num(name, v, 0.1); break;
      case '--levels': o.levels = v.split(',').map((s) => Math.floor(num(name, s, 1))); break;
      case '--chat-streams': o.chatStreams = Math.floor(num(name, v, 0)); break;
      case '--timeout': o.timeout = num(name, v, 1); break;
      case '--idle-timeout': o.idleTimeout = num(name, v, 0); break;
      case '--rss-slack-mib': o.rssSlackMiB = num(name, v, 0); break;
      case '--tie-eps': o.tieEps = num(name, v, 0); break;
      case '--burst': o.burst = Math.floor(num(name, v, 0)); break;
      case '--burst-rounds': o.burstRounds = Math.floor(num(name, v, 1)); break;
      case '--max-other-cores': o.maxOtherCores = num(name, v, 0); break;
      case '--retries': o.retries = Math.floor(num(name, v, 0)); break;
      case '--quiet-wait': o.quietWait = num(name, v, 0); break;
      default: usage(`unknown option ${name}`);
    }
  }
  if (o.prompts > PROMPTS.length) usage(`--prompts is at most ${PROMPTS.length}`);
  return o;
}

const opt = parseArgs(process.argv.slice(2));
const headers = { 'Content-Type': 'application/json', ...(opt.key ? { Authorization: 'Bearer ' + opt.key } : {}) };
const client = new OpenAI({ baseURL: opt.url + '/v1', apiKey: opt.key || 'none', maxRetries: 0, timeout: opt.timeout * 1000 });
const show = (x) => JSON.stringify(x);
const now = () => performance.now();

// ---------------------------------------------------------------------------------------------
// Statistics
function pct(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const ms = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const cores = (x) => (x == null || !Number.isFinite(x) ? 'n/a' : x.toFixed(2));
const mib = (kb) => (kb == null ? 'n/a' : (kb / 1024).toFixed(1));

// ---------------------------------------------------------------------------------------------
// Server memory: VmRSS of --pid (kB), sampled every 100 ms while running.
function readRssKb(pid) {
  if (!pid) return null;
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
// CPU time (clock ticks) of the whole machine (busy), of a process, from /proc; null when unreadable.
function cpuBusyTicks() {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return f[0] + f[1] + f[2] + f[5] + f[6] + f[7];  // user nice system irq softirq steal
  } catch { return null; }
}
function procTicks(pid) {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);  // utime stime
  } catch { return null; }
}
// Cores other processes keep busy right now (over `ms`), apart from the server and this process.
async function otherCpuNow(pid, ms) {
  const a = cpuSnapshot(pid);
  await new Promise((r) => setTimeout(r, ms));
  return cpuUse(a, cpuSnapshot(pid)).other_cores;
}
// Cores busy over an interval: the server, this load generator, everything else on the machine.
function cpuSnapshot(pid) { return { t: now(), busy: cpuBusyTicks(), server: pid ? procTicks(pid) : null, self: procTicks('self') }; }
function cpuUse(a, b, hz = 100) {
  const secs = (b.t - a.t) / 1000;
  const d = (k) => (a[k] == null || b[k] == null ? null : (b[k] - a[k]) / hz / secs);
  const busy = d('busy'), server = d('server'), self = d('self');
  return { server_cores: server, client_cores: self,
    other_cores: busy == null || server == null || self == null ? null : Math.max(0, busy - server - self) };
}
class RssSampler {
  constructor(pid) { this.pid = pid; this.peak = null; this.samples = 0; this.timer = null; }
  sample() {
    const r = readRssKb(this.pid);
    if (r != null) { this.samples += 1; this.peak = this.peak == null ? r : Math.max(this.peak, r); }
    return r;
  }
  start() { if (this.pid) { this.sample(); this.timer = setInterval(() => this.sample(), 100); } return this; }
  stop() { if (this.timer) clearInterval(this.timer); this.timer = null; this.sample(); return this.peak; }
}

// ---------------------------------------------------------------------------------------------
// The kernel's count of connections dropped because a listen queue was full (TcpExt
// ListenOverflows in /proc/net/netstat, this network namespace). Only meaningful when the server
// runs on this machine; null when unreadable. A dropped connection costs its client a SYN
// retransmit (1 s, then 3 s, ...) before the request even starts.
const LOCAL_SERVER = /^https?:\/\/(127\.[\d.]+|localhost|\[::1\])(:\d+)?$/.test(opt.url);
function listenOverflows() {
  if (!LOCAL_SERVER) return null;
  try {
    const lines = fs.readFileSync('/proc/net/netstat', 'utf8').split('\n');
    for (let i = 0; i + 1 < lines.length; i++) {
      if (!lines[i].startsWith('TcpExt:') || !lines[i + 1].startsWith('TcpExt:')) continue;
      const names = lines[i].split(/\s+/), vals = lines[i + 1].split(/\s+/);
      const k = names.indexOf('ListenOverflows');
      return k > 0 ? Number(vals[k]) : null;
    }
  } catch {}
  return null;
}

// ---------------------------------------------------------------------------------------------
// GET /metrics: the per-model gauges.
async function metrics() {
  const res = await fetch(opt.url + '/metrics', { headers, signal: AbortSignal.timeout(30000) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET /metrics: HTTP ${res.status}: ${text.slice(0, 300)}`);
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)\{model="((?:[^"\\]|\\.)*)"\}\s+(\S+)$/.exec(line);
    if (!m) continue;
    (out[m[2]] ??= {})[m[1]] = Number(m[3]);
  }
  return out;
}
function kvState(mx, model) {
  const g = mx[model] || {};
  return {
    blocks_in_use: g.upg_kv_cache_blocks_in_use, prefix_blocks: g.upg_kv_cache_prefix_blocks,
    running: g.upg_running_requests, queue: g.upg_queue_depth, kv_bytes: g.upg_kv_cache_bytes_allocated,
    steps: g.upg_batch_sequences_count, seqs: g.upg_batch_sequences_sum,
  };
}
function isIdle(s) {
  return s.blocks_in_use !== undefined && s.blocks_in_use - s.prefix_blocks === 0 && s.running === 0 && s.queue === 0;
}
// Polls until every model is idle (no blocks held by sequences, nothing running or queued).
async function waitIdle(models, timeoutS) {
  const t0 = now();
  let mx;
  for (;;) {
    mx = await metrics();
    if (models.every((m) => isIdle(kvState(mx, m)))) return { ok: true, seconds: (now() - t0) / 1000, mx };
    if (now() - t0 > timeoutS * 1000) return { ok: false, seconds: (now() - t0) / 1000, mx };
    await new Promise((r) => setTimeout(r, 100));
  }
}
const fmtKv = (s) => `blocks_in_use ${s.blocks_in_use}, prefix_blocks ${s.prefix_blocks}, running ${s.running}, ` +
  `queue ${s.queue}, kv bytes ${s.kv_bytes}`;

// ---------------------------------------------------------------------------------------------
// One streaming request by fetch, timed on the client. Never throws: failures are in .error.
async function streamRequest({ chat, model, prompt, maxTokens, extra = {} }) {
  const r = { chat, model, prompt, status: 0, error: null, text: '', finish: null, done: false, usage: null,
    tStart: now(), tFirst: null, tLast: null, tEnd: null, chunks: 0, textChunks: 0 };
  const body = { model, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true }, ...extra };
  if (chat) body.messages = [{ role: 'user', content: prompt }]; else body.prompt = prompt;
  try {
    const res = await fetch(opt.url + (chat ? '/v1/chat/completions' : '/v1/completions'), {
      method: 'POST', headers, body: JSON.stringify(body), signal: AbortSignal.timeout(opt.timeout * 1000),
    });
    r.status = res.status;
    if (res.status !== 200) {
      const t = await res.text();
      r.error = `HTTP ${res.status}: ${t.slice(0, 300)}`;
      return r;
    }
    const ctype = res.headers.get('content-type') || '';
    if (!ctype.startsWith('text/event-stream')) r.error = `Content-Type is "${ctype}", expected text/event-stream`;
    const dec = new TextDecoder();
    let buf = '';
    const handle = (block) => {
      for (const line of block.split('\n')) {
        if (!line.startsWith('data:')) continue;  // comments (": keep-alive"), event names
        const data = line.slice(5).trimStart();
        if (r.done) { r.error ??= `data after [DONE]: ${data.slice(0, 200)}`; continue; }
        if (data === '[DONE]') { r.done = true; continue; }
        let j;
        try { j = JSON.parse(data); } catch { r.error ??= `not JSON: ${data.slice(0, 200)}`; continue; }
        r.chunks += 1;
        if (j.error) { r.error ??= `error event: ${show(j.error)}`; continue; }
        if (j.usage) r.usage = j.usage;
        for (const c of j.choices || []) {
          const piece = chat ? c.delta && c.delta.content : c.text;
          if (typeof piece === 'string' && piece.length) {
            const t = now();
            if (r.tFirst === null) r.tFirst = t;
            r.tLast = t;
            r.text += piece;
            r.textChunks += 1;
          }
          if (c.finish_reason) {
            if (r.finish) r.error ??= `two finish_reasons: ${r.finish}, ${c.finish_reason}`;
            r.finish = c.finish_reason;
          }
        }
      }
    };
    for await (const bytes of res.body) {
      buf += dec.decode(bytes, { stream: true });
      let k;
      while ((k = buf.indexOf('\n\n')) >= 0) {
        handle(buf.slice(0, k));
        buf = buf.slice(k + 2);
      }
    }
    buf += dec.decode();
    if (buf.trim()) handle(buf);
    if (!r.done) r.error ??= 'the stream ended without "data: [DONE]"';
    if (!r.finish) r.error ??= 'no chunk carried a finish_reason';
    if (!r.usage) r.error ??= 'no usage chunk although stream_options.include_usage was set';
  } catch (e) {
    r.error ??= `${e.name}: ${e.message}${e.cause ? ' (' + e.cause.message + ')' : ''}`;
  } finally {
    r.tEnd = now();
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
async function listModels() {
  const res = await fetch(opt.url + '/v1/models', { headers, signal: AbortSignal.timeout(30000) });
  const t = await res.text();
  if (res.status !== 200) throw new Error(`GET /v1/models: HTTP ${res.status}: ${t.slice(0, 300)}`);
  return JSON.parse(t).data;
}

async function modelsToUse() {
  const listed = await listModels();
  const ids = listed.map((m) => m.id);
  const models = opt.models.length ? opt.models : ids;
  for (const m of models) if (!ids.includes(m)) throw new Error(`model ${m} is not served (served: ${ids.join(', ')})`);
  const chatCapable = models.filter((m) => listed.find((x) => x.id === m).meta?.has_chat_template);
  return { models, chatCapable };
}

function rssReport(idle, peak, after) {
  if (!opt.pid) return 'server RSS: not measured (no --pid)';
  return `server RSS (pid ${opt.pid}): idle ${mib(idle)} MiB, peak ${mib(peak)} MiB, after ${mib(after)} MiB ` +
    `(after - idle = ${after != null && idle != null ? ((after - idle) / 1024).toFixed(1) : 'n/a'} MiB)`;
}

// ---------------------------------------------------------------------------------------------
// A burst of `n` simultaneous new connections, each GET /health: every one must be answered within
// 3 s (a connection dropped by a full listen queue waits 1 s, 3 s, ... for retransmits, or is reset).
async function connectionBurst(n) {
  const o0 = listenOverflows();
  const t0 = now();
  const res = await Promise.all(Array.from({ length: n }, async () => {
    const t = now();
    try {
      const r = await fetch(opt.url + '/health', { signal: AbortSignal.timeout(3000) });
      await r.text();
      return { ms: now() - t, status: r.status };
    } catch (e) {
      return { ms: now() - t, error: e.name === 'TimeoutError' ? 'no answer within 3 s' : (e.cause && e.cause.code) || e.message };
    }
  }));
  const o1 = listenOverflows();
  const bad = {};
  for (const r of res) {
    const k = r.error || (r.status !== 200 ? `HTTP ${r.status}` : null);
    if (k) bad[k] = (bad[k] || 0) + 1;
  }
  const lat = res.map((r) => r.ms);
  return { n, wall_ms: now() - t0, p50_ms: pct(lat, 50), max_ms: Math.max(...lat), slow: lat.filter((x) => x >= 1000).length,
    bad, overflows: o0 !== null && o1 !== null ? o1 - o0 : null };
}

// ---------------------------------------------------------------------------------------------
async function check() {
  const failures = [];
  const fail = (msg) => { failures.push(msg); console.log('FAIL ' + msg); };
  const { models, chatCapable } = await modelsToUse();
  const prompts = PROMPTS.slice(0, opt.prompts);
  const N = opt.maxTokens;
  console.log(`check: ${opt.url}, models ${models.join(', ')}, ${opt.clients} completion streams + ` +
    `${chatCapable.length ? opt.chatStreams : 0} chat streams, ${prompts.length} prompts, max_tokens ${N}`);

  const rssIdle = readRssKb(opt.pid);
  // 0. Connection bursts on an idle server.
  for (let round = 1; opt.burst > 0 && round <= opt.burstRounds; round++) {
    const b = await connectionBurst(opt.burst);
    const line = `connection burst ${round}/${opt.burstRounds}: ${b.n} simultaneous GET /health: p50 ${ms(b.p50_ms)} ms, ` +
      `max ${ms(b.max_ms)} ms, ${b.slow} took >= 1 s, failures ${show(b.bad)}, listen queue overflows ` +
      `${b.overflows === null ? 'n/a' : b.overflows}`;
    const problem = Object.keys(b.bad).length > 0 || (b.overflows > 0 && !opt.allowListenOverflow);
    if (!problem) { console.log(line); } else {
      fail(line + '\n    clients were refused or stalled: the server\'s listen backlog is too small for a burst of ' +
        'connections (`ss -lnt` shows it as Send-Q of the listening socket; cpp-httplib\'s CPPHTTPLIB_LISTEN_BACKLOG ' +
        'defaults to 5). A dropped handshake costs the client a retransmit (1 s, 3 s, 7 s, ...) or a reset. ' +
        '(--burst 0 skips this; --allow-listen-overflow tolerates overflows that did not fail a request)');
      break;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  const before = await waitIdle(models, opt.idleTimeout);
  for (const m of models) console.log(`metrics before  ${m}: ${fmtKv(kvState(before.mx, m))}`);
  if (!before.ok) fail('the server is not idle before the test (requests still running or blocks held)');

  // 1. Single-request greedy references, one at a time.
  const ref = {}, chatRef = {};
  const tRef = now();
  for (const m of models) {
    for (const [pi, p] of prompts.entries()) {
      const r = await client.completions.create({ model: m, prompt: p, max_tokens: N, temperature: 0 });
      ref[`${m}\u0000${pi}`] = { text: r.choices[0].text, finish: r.choices[0].finish_reason, tokens: r.usage.completion_tokens };
    }
  }
  const chatJobs = [];
  if (chatCapable.length) {
    for (let i = 0; i < opt.chatStreams; i++) chatJobs.push({ model: chatCapable[i % chatCapable.length], pi: i % prompts.length });
    for (const { model, pi } of chatJobs) {
      const k = `${model}\u0000${pi}`;
      if (chatRef[k]) continue;
      const r = await client.chat.completions.create({
        model, messages: [{ role: 'user', content: prompts[pi] }], max_tokens: N, temperature: 0 });
      chatRef[k] = { text: r.choices[0].message.content, finish: r.choices[0].finish_reason, tokens: r.usage.completion_tokens };
    }
  }
  console.log(`references: ${Object.keys(ref).length} completions + ${Object.keys(chatRef).length} chats, one at a time, ` +
    `in ${((now() - tRef) / 1000).toFixed(2)} s`);
  for (const m of models) console.log(`  ${m} / ${show(prompts[0])} -> ${show(ref[`${m}\u00000`].text)}`);
  const mid = await waitIdle(models, opt.idleTimeout);
  if (!mid.ok) fail('the server did not become idle after the single requests: ' + models.map((m) => `${m}: ${fmtKv(kvState(mid.mx, m))}`).join('; '));

  // 2. Everything at once.
  const sampler = new RssSampler(opt.pid).start();
  const jobs = [];
  for (let i = 0; i < opt.clients; i++) jobs.push({ chat: false, model: models[i % models.length], pi: i % prompts.length });
  for (const j of chatJobs) jobs.push({ chat: true, ...j });
  const overflow0 = listenOverflows();
  const t0 = now();
  const results = await Promise.all(jobs.map((j) => streamRequest({ chat: j.chat, model: j.model, prompt: prompts[j.pi], maxTokens: N })
    .then((r) => Object.assign(r, { pi: j.pi }))));
  const wall = (now() - t0) / 1000;
  const overflow1 = listenOverflows();

  // A streamed reply that differs from the single-request one is tolerated only where batching's
  // floating-point differences can flip a greedy choice: at the first differing token the single
  // request's two best candidates are within --tie-eps (nats) and the stream took the runner-up.
  // Anything else (a different token where the choice was clear, a cut or garbled text, a
  // different finish on the same text) is a failure.
  const diag = {};
  async function diagnosis(chat, model, pi) {
    const k = `${chat}\u0000${model}\u0000${pi}`;
    if (!diag[k]) {
      const toks = [];
      if (chat) {
        const r = await client.chat.completions.create({ model, messages: [{ role: 'user', content: prompts[pi] }],
          max_tokens: N, temperature: 0, logprobs: true, top_logprobs: 5 });
        for (const e of r.choices[0].logprobs.content) {
          toks.push({ text: e.token, top: e.top_logprobs.map((t) => [t.token, t.logprob]) });
        }
        diag[k] = { text: r.choices[0].message.content, toks };
      } else {
        const r = await client.completions.create({ model, prompt: prompts[pi], max_tokens: N, temperature: 0, logprobs: 5 });
        const lp = r.choices[0].logprobs;
        lp.tokens.forEach((t, i) => toks.push({ text: t, top: Object.entries(lp.top_logprobs[i] || {}) }));
        diag[k] = { text: r.choices[0].text, toks };
      }
      for (const t of diag[k].toks) t.top.sort((a, b) => b[1] - a[1]);
    }
    return diag[k];
  }
  async function explainMismatch(r, want) {
    const d = await diagnosis(r.chat, r.model, r.pi);
    if (d.text !== want.text) return { tie: false, why: `the single request with logprobs gave yet another text ${show(d.text)}` };
    let L = 0;
    while (L < r.text.length && L < want.text.length && r.text[L] === want.text[L]) L++;
    if (L === want.text.length && L === r.text.length) return { tie: false, why: 'same text, different finish_reason or token count' };
    let off = 0, i = 0;
    for (; i < d.toks.length && off + d.toks[i].text.length <= L; i++) off += d.toks[i].text.length;
    if (i >= d.toks.length) return { tie: false, why: `streamed text is longer than the single reply's ${d.toks.length} tokens` };
    const top = d.toks[i].top;
    const gap = top.length > 1 ? top[0][1] - top[1][1] : Infinity;
    const rest = r.text.slice(off);
    const took = top.slice(1).find(([t, lp]) => top[0][1] - lp <= opt.tieEps && t.length > 0 && (t.includes('\ufffd') || rest.startsWith(t)));
    const where = `token ${i} (single took ${show(d.toks[i].text)}; candidates ${top.slice(0, 3).map(([t, lp]) => `${show(t)}:${lp.toFixed(4)}`).join(' ')}; ` +
      `top-2 gap ${gap.toFixed(4)} nats; the stream went on with ${show(rest.slice(0, 12))})`;
    if (took) return { tie: true, why: `near tie at ${where}` };
    return { tie: false, why: `first difference at ${where}` };
  }

  let errors = 0, mismatches = 0, ties = 0, tokens = 0;
  const tieNotes = [];
  for (const [i, r] of results.entries()) {
    const what = `${r.chat ? 'chat' : 'completion'} stream #${i} (${r.model}, prompt ${r.pi} ${show(prompts[r.pi])})`;
    if (r.usage) tokens += r.usage.completion_tokens;
    if (r.error) { errors += 1; fail(`${what}: ${r.error}`); continue; }
    const want = (r.chat ? chatRef : ref)[`${r.model}\u0000${r.pi}`];
    const got = { text: r.text, finish: r.finish, tokens: r.usage.completion_tokens };
    if (got.text === want.text && got.finish === want.finish && got.tokens === want.tokens) continue;
    const x = await explainMismatch(r, want);
    if (x.tie && opt.tieEps > 0) {
      ties += 1;
      if (!tieNotes.some((n) => n.startsWith(`${r.chat ? 'chat' : 'completion'} ${r.model} prompt ${r.pi}:`))) {
        tieNotes.push(`${r.chat ? 'chat' : 'completion'} ${r.model} prompt ${r.pi}: ${x.why}`);
      }
      continue;
    }
    mismatches += 1;
    fail(`${what}: differs from the single-request reply: ${x.why}\n    single:   ${show(want)}\n    streamed: ${show(got)}`);
  }
  if (ties) {
    console.log(`note: ${ties} stream(s) left the single-request greedy path at a near tie (top-2 logprobs within ` +
      `--tie-eps ${opt.tieEps}), i.e. batched numerics differ from single-request numerics; tolerated:`);
    for (const n of tieNotes) console.log('  ' + n);
  }
  const ttft = results.filter((r) => r.tFirst !== null).map((r) => r.tFirst - r.tStart);
  if (overflow0 !== null && overflow1 !== null) {
    const dropped = overflow1 - overflow0;
    const msg = `${dropped} connection(s) overflowed a listen queue during the burst of ${jobs.length} requests ` +
      `(TcpExt ListenOverflows in /proc/net/netstat)`;
    if (dropped > 0 && !opt.allowListenOverflow) {
      fail(msg + ': the server\'s listen backlog is smaller than a burst of clients, and each dropped connection ' +
        'waits for a SYN retransmit (>= 1 s) before its request starts (`ss -lnt` shows the backlog as Send-Q; ' +
        'cpp-httplib\'s CPPHTTPLIB_LISTEN_BACKLOG defaults to 5). --allow-listen-overflow tolerates this');
    } else {
      console.log(msg);
    }
  }

  // 3. Back to idle: every sequence's blocks freed, nothing running or queued.
  const after = await waitIdle(models, opt.idleTimeout);
  for (const m of models) {
    const s = kvState(after.mx, m), b = kvState(mid.mx, m);
    const steps = s.steps - b.steps, seqs = s.seqs - b.seqs;
    console.log(`metrics after   ${m}: ${fmtKv(s)}; ${steps} engine steps, ${steps ? (seqs / steps).toFixed(1) : 'n/a'} sequences per step`);
    if (!isIdle(s)) fail(`${m}: not idle ${opt.idleTimeout} s after all requests ended: ${fmtKv(s)} ` +
      `(blocks_in_use - prefix_blocks = ${s.blocks_in_use - s.prefix_blocks}, expected 0)`);
  }
  if (after.ok) console.log(`idle again ${after.seconds.toFixed(2)} s after the last request ended`);

  // 4. Memory.
  await new Promise((r) => setTimeout(r, 300));
  const peak = sampler.stop();
  const rssAfter = readRssKb(opt.pid);
  console.log(rssReport(rssIdle, peak, rssAfter));
  if (opt.pid && rssIdle != null && rssAfter != null && rssAfter - rssIdle > opt.rssSlackMiB * 1024) {
    fail(`server RSS grew by ${((rssAfter - rssIdle) / 1024).toFixed(1)} MiB (idle ${mib(rssIdle)} -> after ${mib(rssAfter)}), ` +
      `more than --rss-slack-mib ${opt.rssSlackMiB}`);
  }
  if (opt.pid && rssAfter == null) fail(`cannot read /proc/${opt.pid}/status after the load: did the server die?`);

  const summary = {
    mode: 'check', url: opt.url, models, streams: results.length, chat_streams: chatJobs.length, max_tokens: N,
    errors, mismatches, near_tie_divergences: ties, listen_overflows: overflow0 !== null && overflow1 !== null ? overflow1 - overflow0 : null,
    completion_tokens: tokens, wall_s: wall, tokens_per_s: tokens / wall,
    ttft_p50_ms: pct(ttft, 50), ttft_p99_ms: pct(ttft, 99),
    rss_kib: { idle: rssIdle, peak, after: rssAfter }, failures,
  };
  console.log(`summary: ${results.length} streams (${chatJobs.length} chat), ${errors} errors, ${mismatches} mismatches, ${ties} near-tie divergences; ` +
    `${tokens} tokens in ${wall.toFixed(2)} s = ${(tokens / wall).toFixed(1)} tokens/s aggregate; ` +
    `time to first token p50 ${ms(summary.ttft_p50_ms)} ms, p99 ${ms(summary.ttft_p99_ms)} ms`);
  if (opt.out) fs.writeFileSync(opt.out, JSON.stringify(summary, null, 2) + '\n');
  if (failures.length) {
    console.log(`FAIL load check: ${failures.length} failure(s)`);
    return 1;
  }
  console.log('PASS load check');
  return 0;
}

// ---------------------------------------------------------------------------------------------
async function bench() {
  const { models } = await modelsToUse();
  const model = models[0];
  const prompts = PROMPTS.slice(0, opt.prompts);
  const N = opt.maxTokens;
  const extra = opt.ignoreEos ? { ignore_eos: true } : {};
  console.log(`bench: ${opt.url}, model ${model}, streaming completions, max_tokens ${N}` +
    `${opt.ignoreEos ? ' (ignore_eos)' : ''}, ${opt.seconds} s per level, levels ${opt.levels.join(', ')}`);
  const rssIdle = readRssKb(opt.pid);
  const warm = await streamRequest({ chat: false, model, prompt: prompts[0], maxTokens: N, extra });
  if (warm.error) throw new Error('warm-up request failed: ' + warm.error);

  const levels = [];
  for (let li = 0, attempt = 1; li < opt.levels.length; attempt++) {
    const c = opt.levels[li];
    // On a shared machine: wait (up to --quiet-wait s) until other processes leave the cores alone.
    const busy = await otherCpuNow(opt.pid, 2000);
    if (busy !== null && busy > opt.maxOtherCores && opt.quietWait > 0) {
      const tq = now();
      let b = busy;
      while (b > opt.maxOtherCores && now() - tq < opt.quietWait * 1000) b = await otherCpuNow(opt.pid, 2000);
      console.log(`  (waited ${((now() - tq) / 1000).toFixed(0)} s for other processes to quiet down: ${cores(b)} cores busy)`);
    }
    const idle = await waitIdle([model], Math.max(opt.idleTimeout, 30));
    if (!idle.ok) throw new Error(`the server is not idle before level ${c}: ${fmtKv(kvState(idle.mx, model))}`);
    const m0 = idle.mx[model] || {};
    const cpu0 = cpuSnapshot(opt.pid);
    const lo0 = listenOverflows();
    const sampler = new RssSampler(opt.pid).start();
    const all = [];
    const t0 = now(), deadline = t0 + opt.seconds * 1000;
    await Promise.all(Array.from({ length: c }, async (_, i) => {
      for (let k = 0; now() < deadline; k++) {
        all.push(await streamRequest({ chat: false, model, prompt: prompts[(i + k) % prompts.length], maxTokens: N, extra }));
      }
    }));
    const tEnd = Math.max(...all.map((r) => r.tEnd));
    const wall = (tEnd - t0) / 1000;
    const peak = sampler.stop();
    const cpu = cpuUse(cpu0, cpuSnapshot(opt.pid));
    const lo1 = listenOverflows();
    const m1 = (await metrics())[model] || {};
    const delta = (k) => (m1[k] ?? NaN) - (m0[k] ?? NaN);
    const srvItl = (1000 * delta('upg_inter_token_latency_seconds_sum')) / delta('upg_inter_token_latency_seconds_count');
    const srvTtft = (1000 * delta('upg_time_to_first_token_seconds_sum')) / delta('upg_time_to_first_token_seconds_count');
    const seqsPerStep = delta('upg_batch_sequences_sum') / delta('upg_batch_sequences_count');
    const ok = all.filter((r) => !r.error);
    const tokens = ok.reduce((s, r) => s + r.usage.completion_tokens, 0);
    const ttft = ok.filter((r) => r.tFirst !== null).map((r) => r.tFirst - r.tStart);
    const itl = ok.filter((r) => r.usage.completion_tokens > 1 && r.tLast > r.tFirst)
      .map((r) => (r.tLast - r.tFirst) / (r.usage.completion_tokens - 1));
    const gaps = [];
    for (const r of ok) if (r.textChunks > 1) gaps.push((r.tLast - r.tFirst) / (r.textChunks - 1));
    const lv = {
      clients: c, requests: all.length, errors: all.length - ok.length, completion_tokens: tokens, wall_s: wall,
      tokens_per_s: tokens / wall, requests_per_s: ok.length / wall,
      ttft_p50_ms: pct(ttft, 50), ttft_p99_ms: pct(ttft, 99), itl_p50_ms: pct(itl, 50), itl_p99_ms: pct(itl, 99),
      chunk_gap_p50_ms: pct(gaps, 50), peak_rss_kib: peak,
      server_ttft_mean_ms: srvTtft, server_itl_mean_ms: srvItl, server_sequences_per_step: seqsPerStep,
      cpu_cores: cpu, listen_overflows: lo0 !== null && lo1 !== null ? lo1 - lo0 : null,
      first_errors: all.filter((r) => r.error).slice(0, 5).map((r) => r.error),
    };
    lv.attempt = attempt;
    const noisy = lv.cpu_cores.other_cores > opt.maxOtherCores;
    if (!noisy || attempt > opt.retries) { levels.push(lv); li++; }
    console.log(`  ${c} clients${attempt > 1 ? ` (attempt ${attempt})` : ''}: ${lv.requests} requests, ${lv.errors} errors, ${tokens} tokens in ${wall.toFixed(1)} s = ` +
      `${lv.tokens_per_s.toFixed(1)} tok/s; TTFT p50 ${ms(lv.ttft_p50_ms)} ms p99 ${ms(lv.ttft_p99_ms)} ms; ITL p50 ${ms(lv.itl_p50_ms)} ms; ` +
      `server: ITL mean ${ms(srvItl)} ms, ${Number.isFinite(seqsPerStep) ? seqsPerStep.toFixed(1) : 'n/a'} sequences per step; ` +
      `CPU cores busy: server ${cores(cpu.server_cores)}, client ${cores(cpu.client_cores)}, other processes ${cores(cpu.other_cores)}; ` +
      `listen queue overflows ${lv.listen_overflows ?? 'n/a'}`);
    if (noisy) {
      console.log(`    warning: other processes kept ${cores(cpu.other_cores)} cores busy during this level; its numbers are not clean` +
        (attempt > opt.retries ? ' (kept: no retries left)' : '; measuring it again'));
    }
    if (!noisy || attempt > opt.retries) attempt = 0;
    for (const e of lv.first_errors) console.log('    error: ' + e);
  }
  await waitIdle([model], Math.max(opt.idleTimeout, 30));
  await new Promise((r) => setTimeout(r, 300));
  const rssAfter = readRssKb(opt.pid);

  console.log('');
  console.log(`| clients | requests | errors | gen tokens | tokens/s | TTFT p50 (ms) | TTFT p99 (ms) | ITL p50 (ms) | ITL p99 (ms) | server ITL mean (ms) | seqs/step | peak RSS (MiB) | CPU server/client/other | attempt |`);
  console.log(`|--------:|---------:|-------:|-----------:|---------:|--------------:|--------------:|-------------:|-------------:|---------------------:|----------:|---------------:|:-----------------------:|--------:|`);
  for (const l of levels) {
    console.log(`| ${l.clients} | ${l.requests} | ${l.errors} | ${l.completion_tokens} | ${l.tokens_per_s.toFixed(1)} | ` +
      `${ms(l.ttft_p50_ms)} | ${ms(l.ttft_p99_ms)} | ${ms(l.itl_p50_ms)} | ${ms(l.itl_p99_ms)} | ${ms(l.server_itl_mean_ms)} | ` +
      `${Number.isFinite(l.server_sequences_per_step) ? l.server_sequences_per_step.toFixed(1) : 'n/a'} | ${mib(l.peak_rss_kib)} | ` +
      `${cores(l.cpu_cores.server_cores)} / ${cores(l.cpu_cores.client_cores)} / ${cores(l.cpu_cores.other_cores)} | ${l.attempt} |`);
  }
  console.log('');
  console.log('TTFT/ITL: measured by the client (ITL per request = (last token - first token) / (tokens - 1); tokens that ' +
    'arrive in one read count as simultaneous); server ITL mean and seqs/step: from /metrics over the level; CPU: cores kept ' +
    'busy by the server, by this load generator and by other processes (from /proc; "other" > 0 means a shared machine).');
  console.log('');
  console.log(rssReport(rssIdle, Math.max(...levels.map((l) => l.peak_rss_kib ?? 0)) || null, rssAfter));
  const out = {
    mode: 'bench', url: opt.url, model, max_tokens: N, ignore_eos: opt.ignoreEos, seconds: opt.seconds,
    prompts: prompts.length, rss_kib: { idle: rssIdle, after: rssAfter }, levels, date: new Date().toISOString(),
  };
  if (opt.out) { fs.writeFileSync(opt.out, JSON.stringify(out, null, 2) + '\n'); console.log(`wrote ${opt.out}`); }
  return levels.some((l) => l.errors) ? 1 : 0;
}

try {
  process.exit(opt.mode === 'check' ? await check() : await bench());
} catch (e) {
  if (e instanceof OpenAI.APIError) console.error(`FAIL: API error ${e.status}: ${e.message}\n  body: ${show(e.error)}`);
  else console.error('FAIL: ' + ((e && e.stack) || e));
  process.exit(1);
}
