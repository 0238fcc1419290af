#!/usr/bin/env node
// Fault injection against a running `upg serve` that needs an API key and has small limits:
//
//   upg serve -m MODEL --api-key KEY --max-body 64K -c 256 --max-batch 1 --max-queue 1
//   node faults.mjs --url http://127.0.0.1:PORT --key KEY [--model ID] [--timeout 120]
//
// Checks, in order (exit 1 at the first failure, with the details; 0 when all pass):
//   - a greedy reference reply (completions, temperature 0) before any fault
//   - malformed JSON / a non-object body -> 400 with an OpenAI error object
//     {"error": {"message", "type", "param", "code"}}
//   - wrong types and values (max_tokens "x", messages 5, temperature 9, stream "yes", n 3) -> 400
//     naming the field in error.param (or the message)
//   - missing / wrong API key -> 401 (on /v1/models, /v1/completions, /metrics); /health is open
//   - unknown model -> 404
//   - a ~200 KB body (over --max-body 64K), with Content-Length and chunked -> 413
//     (--skip CHECK,... leaves out named checks; see --help)
//   - a prompt of ~2000 words (over -c 256) -> 400 mentioning the context length; prompt +
//     max_tokens over the context -> 400 naming max_tokens
//   - queue overflow: 6 long streaming requests at once -> at least one 429 JSON error, every
//     accepted one completes (finish_reason, [DONE], all its tokens)
//   - clients killed mid-stream: 8 streaming requests (max_tokens up to 400, as the context allows)
//     aborted after their first chunk (those refused with 429 try again until accepted) -> within
//     5 s /metrics shows the blocks freed (blocks_in_use - prefix_blocks == 0), nothing running or
//     queued, and 8 more requests finished as "cancelled"
//   - a client that leaves while its request waits in the queue -> it leaves the queue within 5 s
//     while the running request goes on (the server looks at a waiting client every 2 s; with
//     -c 256 the running request is done sooner, so this then only checks that all is freed and
//     says that the queued-cancel path was not reached)
//   - raw TCP: half a request then close, half a request left open, a body shorter than its
//     Content-Length, garbage bytes, an endless header line -> the server still answers /health
//   - a fresh greedy request equals the reference made before the faults
import net from 'node:net';

function usage(msg) {
  if (msg) console.error('faults.mjs: ' + msg);
  console.error('usage: node faults.mjs --url URL --key KEY [--model ID] [--timeout 120] [--skip CHECK,...]\n' +
    'checks: ' + CHECKS.join(', '));
  process.exit(2);
}
const CHECKS = ['malformed', 'types', 'auth', 'model', 'body-cap', 'chunked-body-cap', 'context', 'queue', 'abort', 'abort-queued', 'raw-tcp'];
const opt = { url: 'http://127.0.0.1:18080', key: '', model: '', timeout: 120, skip: new Set() };
{
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    const v = a[i + 1];
    if (a[i] === '-h' || a[i] === '--help') usage();
    else if (a[i] === '--url' && v !== undefined) { opt.url = v.replace(/\/+$/, ''); i++; }
    else if (a[i] === '--key' && v !== undefined) { opt.key = v; i++; }
    else if (a[i] === '--model' && v !== undefined) { opt.model = v; i++; }
    else if (a[i] === '--timeout' && v !== undefined) { opt.timeout = Number(v); i++; }
    else if (a[i] === '--skip' && v !== undefined) {
      for (const c of v.split(',').filter(Boolean)) { if (!CHECKS.includes(c)) usage(`--skip: unknown check ${c}`); opt.skip.add(c); }
      i++;
    }
    else usage(`unexpected argument ${a[i]}`);
  }
  if (!opt.key) usage('--key is required (start the server with --api-key)');
}
const U = new URL(opt.url);
const HOST = U.hostname.replace(/^\[|\]$/g, '');
const PORT = Number(U.port || 80);
const AUTH = { Authorization: 'Bearer ' + opt.key };

class Fail extends Error {}
const show = (x) => (x === undefined ? 'undefined' : JSON.stringify(x));
const ok = (msg) => console.log('ok   ' + msg);
function check(cond, msg, details) {
  if (!cond) throw new Fail(msg + (details === undefined ? '' : '\n  details: ' + (typeof details === 'string' ? details : show(details))));
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();

// One HTTP request; the body is parsed as JSON when it is JSON.
async function req(method, path, { body, raw, key = opt.key, headers = {}, timeoutMs = opt.timeout * 1000 } = {}) {
  const h = { ...headers };
  if (key !== null) h.Authorization = 'Bearer ' + key;
  if (body !== undefined || raw !== undefined) h['Content-Type'] = h['Content-Type'] || 'application/json';
  const init = { method, headers: h, signal: AbortSignal.timeout(timeoutMs) };
  if (raw !== undefined) init.body = raw;
  else if (body !== undefined) init.body = JSON.stringify(body);
  if (init.body && typeof init.body.getReader === 'function') init.duplex = 'half';
  const res = await fetch(opt.url + path, init);
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, text, json, headers: res.headers };
}

// An OpenAI error object with the status; `param` must be error.param or appear in the message.
function expectError(what, r, status, { param, mention, code } = {}) {
  check(r.status === status, `${what}: expected HTTP ${status}, got ${r.status}`, r.text.slice(0, 500));
  check((r.headers.get('content-type') || '').startsWith('application/json'),
    `${what}: the error is not application/json (${r.headers.get('content-type')})`, r.text.slice(0, 300));
  const e = r.json && r.json.error;
  check(e && typeof e === 'object', `${what}: the body is not {"error": {...}}`, r.text.slice(0, 500));
  check(typeof e.message === 'string' && e.message.length > 0, `${what}: error.message is not a non-empty string`, e);
  check(typeof e.type === 'string' && e.type.length > 0, `${what}: error.type is not a string`, e);
  check('param' in e && (e.param === null || typeof e.param === 'string'), `${what}: error.param is missing (string or null)`, e);
  check('code' in e && (e.code === null || typeof e.code === 'string'), `${what}: error.code is missing (string or null)`, e);
  if (param) check(e.param === param || e.message.includes(param), `${what}: the error names neither param "${param}" in error.param nor in the message`, e);
  if (mention) check(mention.test(e.message), `${what}: the message does not match ${mention}`, e);
  if (code) check(e.code === code, `${what}: error.code is ${show(e.code)}, expected ${code}`, e);
  return e;
}

// Gauges per model and counters, from GET /metrics.
async function metrics() {
  const r = await req('GET', '/metrics');
  check(r.status === 200, `GET /metrics: HTTP ${r.status}`, r.text.slice(0, 300));
  const g = {}, finished = {};
  for (const line of r.text.split('\n')) {
    let m = /^(upg_\w+)\{model="((?:[^"\\]|\\.)*)"\}\s+(\S+)$/.exec(line);
    if (m) { (g[m[2]] ??= {})[m[1]] = Number(m[3]); continue; }
    m = /^upg_requests_finished_total\{model="((?:[^"\\]|\\.)*)",reason="(\w+)"\}\s+(\S+)$/.exec(line);
    if (m) (finished[m[1]] ??= {})[m[2]] = Number(m[3]);
  }
  return { g, finished };
}
function held(mx, model) {
  const s = mx.g[model] || {};
  return { blocks_in_use: s.upg_kv_cache_blocks_in_use, prefix_blocks: s.upg_kv_cache_prefix_blocks,
    running: s.upg_running_requests, queue: s.upg_queue_depth };
}
async function expectIdleWithin(model, seconds, what) {
  const t0 = now();
  let s;
  for (;;) {
    s = held(await metrics(), model);
    if (s.blocks_in_use - s.prefix_blocks === 0 && s.running === 0 && s.queue === 0) return (now() - t0) / 1000;
    check(now() - t0 < seconds * 1000, `${what}: after ${seconds} s the server still holds cache blocks or requests ` +
      `(blocks_in_use - prefix_blocks = ${s.blocks_in_use - s.prefix_blocks}, expected 0)`, s);
    await sleep(100);
  }
}

// A streaming request read event by event. onEvent(obj) may return 'abort' to cut the connection.
async function stream(path, body, { onEvent, signalAbort, timeoutMs = opt.timeout * 1000 } = {}) {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error('timeout')), timeoutMs);
  if (signalAbort) signalAbort(ac);
  const out = { status: 0, text: '', finish: null, done: false, events: 0, usage: null, error: null, aborted: false, body: '' };
  try {
    const res = await fetch(opt.url + path, { method: 'POST', headers: { ...AUTH, 'Content-Type': 'application/json' },
      body: JSON.stringify({ ...body, stream: true }), signal: ac.signal });
    out.status = res.status;
    if (res.status !== 200) {
      out.body = await res.text();
      try { out.json = JSON.parse(out.body); } catch {}
      out.headers = res.headers;
      return out;
    }
    const dec = new TextDecoder();
    let buf = '';
    for await (const bytes of res.body) {
      buf += dec.decode(bytes, { stream: true });
      let k;
      while ((k = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, k);
        buf = buf.slice(k + 2);
        for (const line of block.split('\n')) {
          if (!line.startsWith('data:')) continue;
          const data = line.slice(5).trim();
          if (data === '[DONE]') { out.done = true; continue; }
          const j = JSON.parse(data);
          out.events += 1;
          if (j.error) out.error = j.error;
          if (j.usage) out.usage = j.usage;
          for (const c of j.choices || []) {
            out.text += (c.delta ? c.delta.content : c.text) || '';
            if (c.finish_reason) out.finish = c.finish_reason;
          }
          if (onEvent && onEvent(j, out) === 'abort') {
            out.aborted = true;
            ac.abort();
            return out;
          }
        }
      }
    }
  } catch (e) {
    if (!out.aborted) out.error = { message: `${e.name}: ${e.message}${e.cause ? ' (' + e.cause.message + ')' : ''}` };
  } finally {
    clearTimeout(timer);
  }
  return out;
}

// Raw TCP: send `chunks` (strings or Buffers, with pauses), then close (or keep open), and collect
// whatever the server answers within waitMs.
function rawTcp(chunks, { close = true, waitMs = 500 } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(PORT, HOST);
    let got = '';
    let settled = false;
    const finish = (why) => { if (!settled) { settled = true; resolve({ got, why, socket: s }); } };
    s.on('data', (d) => { got += d.toString('latin1'); });
    s.on('error', (e) => finish('error ' + e.code));
    s.on('close', () => finish('connection closed'));
    s.on('connect', async () => {
      for (const c of chunks) {
        if (typeof c === 'number') await sleep(c); else s.write(c);
      }
      if (close) { s.end(); setTimeout(() => { s.destroy(); finish(`still open after ${waitMs} ms; closed by the client`); }, waitMs); }
      else setTimeout(() => finish('left open'), waitMs);
    });
  });
}

async function health(what) {
  const r = await req('GET', '/health', { key: null, timeoutMs: 10000 }).catch((e) => ({ status: 0, text: e.message }));
  check(r.status === 200 && r.json && r.json.status === 'ok', `${what}: GET /health does not answer {"status":"ok"}`, `${r.status} ${r.text}`);
}

const run = (name) => {
  if (!opt.skip.has(name)) return true;
  console.log(`skip ${name} (--skip)`);
  return false;
};

async function main() {
  console.log(`faults: ${opt.url}${opt.skip.size ? ' (skipping ' + [...opt.skip].join(', ') + ')' : ''}`);
  await health('start');
  const list = await req('GET', '/v1/models');
  check(list.status === 200 && Array.isArray(list.json && list.json.data) && list.json.data.length, 'GET /v1/models failed', list.text);
  const model = opt.model || list.json.data[0].id;
  const entry = list.json.data.find((m) => m.id === model);
  check(entry, `model ${model} is not served`, list.json.data.map((m) => m.id));
  const ctx = entry.meta && entry.meta.context_length;
  check(Number.isInteger(ctx) && ctx > 0, '/v1/models lacks meta.context_length', entry);
  ok(`model ${model}, context length ${ctx}`);

  // --- the reference, before any fault ----------------------------------------------------------
  const refReq = { model, prompt: 'The history of the city', max_tokens: 16, temperature: 0 };
  const ref = await req('POST', '/v1/completions', { body: refReq });
  check(ref.status === 200 && ref.json.choices && typeof ref.json.choices[0].text === 'string', 'reference completion failed', ref.text);
  const refText = ref.json.choices[0].text;
  ok(`reference greedy reply: ${show(refText)}`);
  const chatBase = { model, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4 };
  const promptTokens = ref.json.usage.prompt_tokens;

  // --- malformed bodies --------------------------------------------------------------------------
  if (run('malformed')) {
    expectError('malformed JSON (completions)', await req('POST', '/v1/completions', { raw: '{"model": "' + model + '", "prompt": ' }), 400, { mention: /JSON/i });
    expectError('malformed JSON (chat)', await req('POST', '/v1/chat/completions', { raw: '{not json' }), 400, { mention: /JSON/i });
    expectError('empty body', await req('POST', '/v1/completions', { raw: '' }), 400);
    expectError('a JSON array as the body', await req('POST', '/v1/chat/completions', { raw: '[1, 2, 3]' }), 400, { mention: /object/i });
    ok('malformed JSON, an empty body and a non-object body -> 400 with an error object');
  }

  // --- wrong types and values ---------------------------------------------------------------------
  if (run('types')) {
    const wrong = [
      ['max_tokens: "x"', '/v1/completions', { ...refReq, max_tokens: 'x' }, 'max_tokens'],
      ['messages: 5', '/v1/chat/completions', { model, messages: 5 }, 'messages'],
      ['temperature: 9', '/v1/chat/completions', { ...chatBase, temperature: 9 }, 'temperature'],
      ['stream: "yes"', '/v1/completions', { ...refReq, stream: 'yes' }, 'stream'],
      ['max_tokens: -1', '/v1/completions', { ...refReq, max_tokens: -1 }, 'max_tokens'],
      ['n: 3', '/v1/completions', { ...refReq, n: 3 }, 'n'],
      ['n: 3 (chat)', '/v1/chat/completions', { ...chatBase, n: 3 }, 'n'],
      ['prompt: {}', '/v1/completions', { model, prompt: {} }, 'prompt'],
      ['model: 7', '/v1/completions', { ...refReq, model: 7 }, 'model'],
    ];
    for (const [what, path, body, param] of wrong) {
      const e = expectError(what, await req('POST', path, { body }), 400, { param });
      ok(`${what} -> 400, param ${show(e.param)}: ${e.message}`);
    }
  }

  // --- authentication -----------------------------------------------------------------------------
  if (run('auth')) {
    for (const [what, key] of [['no key', null], ['wrong key', opt.key + 'x'], ['empty key', ''], ['key prefix', opt.key.slice(0, -1)]]) {
      expectError(`GET /v1/models with ${what}`, await req('GET', '/v1/models', { key }), 401);
      expectError(`POST /v1/completions with ${what}`, await req('POST', '/v1/completions', { key, body: refReq }), 401);
      expectError(`GET /metrics with ${what}`, await req('GET', '/metrics', { key }), 401);
    }
    {
      const r = await req('POST', '/v1/completions', { key: null, body: refReq, headers: { Authorization: 'Basic ' + Buffer.from('u:' + opt.key).toString('base64') } });
      expectError('Basic instead of Bearer auth', r, 401);
    }
    await health('/health without a key');
    ok('missing, wrong, empty, prefix and non-Bearer keys -> 401 on /v1/models, /v1/completions, /metrics; /health needs none');
  }

  // --- unknown model --------------------------------------------------------------------------------
  if (run('model')) {
    const e = expectError('unknown model (completions)', await req('POST', '/v1/completions', { body: { ...refReq, model: 'no-such-model' } }), 404, { param: 'model' });
    expectError('unknown model (chat)', await req('POST', '/v1/chat/completions', { body: { ...chatBase, model: 'no-such-model' } }), 404, { param: 'model' });
    ok(`unknown model -> 404: ${e.message}`);
  }

  // --- bodies over the cap ---------------------------------------------------------------------------
  const big = JSON.stringify({ model, prompt: 'word '.repeat(40000), max_tokens: 1 });  // ~200 KB
  if (run('body-cap')) {
    const r = await req('POST', '/v1/completions', { raw: big }).catch((e) => check(false,
      `a ${big.length}-byte body: the request failed instead of an HTTP 413: ${e.message} ${(e.cause && e.cause.message) || ''}`));
    const e = expectError(`a ${big.length}-byte body (Content-Length)`, r, 413);
    await health('after the 413');
    ok(`a ${big.length}-byte body with Content-Length -> 413: ${e.message}`);
  }
  // The same body sent with Transfer-Encoding: chunked (no Content-Length) must meet the same cap.
  if (run('chunked-body-cap')) {
    const bytes = new TextEncoder().encode(big);
    const chunked = new ReadableStream({
      start(c) { for (let i = 0; i < bytes.length; i += 16384) c.enqueue(bytes.slice(i, i + 16384)); c.close(); },
    });
    const r = await req('POST', '/v1/completions', { raw: chunked }).catch((err) => check(false,
      `a chunked ${big.length}-byte body: the request failed instead of an HTTP 413: ${err.message} ${(err.cause && err.cause.message) || ''}`));
    if (r.status !== 413) {
      check(false, `a ${big.length}-byte body sent with Transfer-Encoding: chunked: expected HTTP 413 (the --max-body cap), ` +
        `got ${r.status}: the server read and parsed the whole body, so --max-body does not bound chunked uploads`, r.text.slice(0, 400));
    }
    expectError(`a ${big.length}-byte body (chunked)`, r, 413);
    await health('after the chunked 413');
    ok(`a ${big.length}-byte chunked body -> 413`);
  }

  // --- context length ----------------------------------------------------------------------------------
  if (run('context')) {
    {
      const words = [];
      for (let i = 0; i < 2000; i++) words.push(['the', 'city', 'river', 'history', 'old', 'market'][i % 6]);
      const e = expectError('a prompt of 2000 words', await req('POST', '/v1/completions', { body: { model, prompt: words.join(' '), max_tokens: 4 } }),
        400, { mention: /context length/i, param: 'prompt' });
      ok(`prompt of 2000 words -> 400: ${e.message}`);
      const e2 = expectError('a chat of 2000 words', await req('POST', '/v1/chat/completions', { body: { ...chatBase, messages: [{ role: 'user', content: words.join(' ') }] } }),
        400, { mention: /context length/i });
      ok(`chat of 2000 words -> 400: ${e2.message}`);
      const e3 = expectError('prompt + max_tokens over the context', await req('POST', '/v1/completions', { body: { ...refReq, max_tokens: ctx } }),
        400, { mention: /context length/i, param: 'max_tokens' });
      ok(`max_tokens = context length -> 400: ${e3.message}`);
    }
  }

  // --- queue overflow -------------------------------------------------------------------------------
  if (run('queue')) {
    const n = Math.min(200, ctx - promptTokens);
    const rs = await Promise.all(Array.from({ length: 6 }, () =>
      stream('/v1/completions', { ...refReq, max_tokens: n, ignore_eos: true, stream_options: { include_usage: true } })));
    const refused = rs.filter((r) => r.status === 429), accepted = rs.filter((r) => r.status === 200);
    check(refused.length >= 1, `6 streaming requests at once (max_tokens ${n}) on --max-batch 1 --max-queue 1: no 429`, rs.map((r) => r.status));
    check(refused.length + accepted.length === 6, 'queue overflow: statuses other than 200 and 429', rs.map((r) => `${r.status} ${r.body}`));
    for (const r of refused) {
      expectError('queue overflow', { status: r.status, text: r.body, json: r.json, headers: r.headers }, 429);
    }
    for (const r of accepted) {
      check(!r.error && r.done && r.finish === 'length' && r.usage && r.usage.completion_tokens === n,
        'queue overflow: an accepted request did not complete all its tokens', { error: r.error, done: r.done, finish: r.finish, usage: r.usage });
    }
    ok(`queue overflow: ${refused.length} x 429 (${refused[0].json.error.type}: ${refused[0].json.error.message}), ` +
      `${accepted.length} completed ${n} tokens each`);
    await expectIdleWithin(model, 5, 'after the queue overflow');
  }

  // --- clients killed mid-stream ------------------------------------------------------------------
  if (run('abort')) {
    const before = await metrics();
    const n = Math.min(400, ctx - promptTokens);
    const t0 = now();
    let retries = 0;
    const slot = async () => {
      for (;;) {
        check(now() - t0 < 60000, 'aborted clients: could not get 8 requests accepted within 60 s');
        const r = await stream('/v1/completions', { ...refReq, max_tokens: n, ignore_eos: true },
          { onEvent: (j, out) => (out.text.length > 0 ? 'abort' : undefined) });
        if (r.status === 429) { retries += 1; await sleep(20); continue; }
        check(r.status === 200, `aborted clients: HTTP ${r.status}`, r.body);
        check(r.aborted, 'aborted clients: the stream ended before the client could abort it', r);
        return r;
      }
    };
    const rs = await Promise.all(Array.from({ length: 8 }, slot));
    const secs = await expectIdleWithin(model, 5, 'after 8 clients aborted mid-stream');
    const after = await metrics();
    const c0 = (before.finished[model] || {}).cancelled || 0, c1 = (after.finished[model] || {}).cancelled || 0;
    ok(`8 streams (max_tokens ${n}) aborted after their first chunk (${retries} retries after 429); ` +
      `blocks freed ${secs.toFixed(2)} s later; upg_requests_finished_total{reason="cancelled"} +${c1 - c0}`);
    check(c1 - c0 >= rs.length, `aborted clients: only ${c1 - c0} requests counted as cancelled, ${rs.length} were aborted mid-stream`);
  }

  // --- a client that gives up while its request is still queued -----------------------------------
  if (run('abort-queued')) {
    const n = Math.min(400, ctx - promptTokens);
    let acA, acB, firstA;
    const gotFirst = new Promise((r) => { firstA = r; });
    const a = stream('/v1/completions', { ...refReq, max_tokens: n, ignore_eos: true },
      { signalAbort: (ac) => { acA = ac; }, onEvent: (j, out) => { if (out.text) firstA(); } });
    await Promise.race([gotFirst, a]);
    const b = stream('/v1/completions', { ...refReq, max_tokens: n, ignore_eos: true }, { signalAbort: (ac) => { acB = ac; } });
    // B must be waiting behind A (--max-batch 1); wait until /metrics says so.
    const t0 = now();
    let s;
    for (;;) {
      s = held(await metrics(), model);
      if (s.queue === 1 && s.running === 1) break;
      check(now() - t0 < 5000, 'abort while queued: the second request never showed as queued (is --max-batch 1?)', s);
      await sleep(20);
    }
    let aEnded = false;
    a.then(() => { aEnded = true; });
    acB.abort();
    const rb = await b;
    const t1 = now();
    let aRunningAfter = false;
    for (;;) {
      s = held(await metrics(), model);
      if (s.queue === 0) { aRunningAfter = !aEnded; break; }
      check(now() - t1 < 5000, 'abort while queued: the abandoned request is still queued 5 s after its client left', s);
      await sleep(50);
    }
    const dequeued = (now() - t1) / 1000;
    acA.abort();
    await a;
    const secs = await expectIdleWithin(model, 5, 'after a running and a queued client aborted');
    if (aRunningAfter) {
      check(s.running === 1, 'abort while queued: the queue emptied but the running request is gone', s);
      ok(`a queued request whose client left (status ${rb.status}) left the queue ${dequeued.toFixed(2)} s later while the ` +
        `running one went on; after aborting that too, blocks freed ${secs.toFixed(2)} s later`);
    } else {
      ok(`a queued request whose client left: the running request (${n} tokens) ended before the server noticed ` +
        `(it looks at a waiting client every 2 s), so the abandoned one was admitted and then dropped; the queue emptied ` +
        `${dequeued.toFixed(2)} s later and blocks were freed ${secs.toFixed(2)} s after that (the queued-cancel path itself ` +
        `needs a longer context to be reached)`);
    }
  }

  // --- raw TCP misbehaviour ---------------------------------------------------------------------------
  if (run('raw-tcp')) {
    const results = [];
    const half = `POST /v1/completions HTTP/1.1\r\nHost: ${HOST}\r\nAuthorization: Bearer ${opt.key}\r\nContent-Type: application/json\r\nContent-Le`;
    results.push(['half a request, then close', await rawTcp([half])]);
    const open = await rawTcp([half], { close: false, waitMs: 200 });  // left open during the checks below
    results.push(['headers then half the body, then close', await rawTcp([
      `POST /v1/completions HTTP/1.1\r\nHost: ${HOST}\r\nAuthorization: Bearer ${opt.key}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model": "${model}", "pro`])]);
    const garbage = Buffer.alloc(4096);
    for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 7919 + 13) & 255;
    const g = await rawTcp([garbage, '\r\n\r\n'], { waitMs: 1000 });
    results.push(['4 KB of garbage bytes', g]);
    results.push(['a garbage request line', await rawTcp(['\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 GARBAGE / HTTP/9.9\r\n\r\n'], { waitMs: 1000 })]);
    results.push(['a 100 KB header line', await rawTcp([`GET /health HTTP/1.1\r\nHost: ${HOST}\r\nX-Long: ${'a'.repeat(100000)}\r\n\r\n`], { waitMs: 1000 })]);
    results.push(['a request line without a version', await rawTcp(['GET /health\r\n\r\n'], { waitMs: 1000 })]);
    await health('while a half request is held open');
    open.socket.destroy();
    for (const [what, r] of results) {
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(r.got);
      check(!status || Number(status[1]) >= 400, `${what}: the server answered ${status && status[1]}`, r.got.slice(0, 300));
      console.log(`     ${what}: ${status ? 'HTTP ' + status[1] : 'no answer'} (${r.why})`);
    }
    await sleep(200);
    await health('after the raw TCP clients');
    ok('raw TCP: half requests (closed and held open), a short body, garbage, a long header line -> /health still answers');
  }

  // --- the server still works as before ----------------------------------------------------------
  {
    const r = await req('POST', '/v1/completions', { body: refReq });
    check(r.status === 200, `the fresh request after the faults failed: HTTP ${r.status}`, r.text);
    check(r.json.choices[0].text === refText, 'the greedy reply after the faults differs from the one before',
      { before: refText, after: r.json.choices[0].text });
    const s = await stream('/v1/completions', { ...refReq });
    check(s.status === 200 && s.done && s.text === refText, 'the streamed greedy reply after the faults differs from the one before',
      { before: refText, after: s.text, status: s.status, error: s.error });
    await expectIdleWithin(model, 5, 'at the end');
    ok('after the faults the greedy reply (plain and streamed) equals the one before');
  }
  console.log('PASS faults');
}

try {
  await main();
  process.exit(0);
} catch (e) {
  console.error('FAIL: ' + (e instanceof Fail ? e.message : (e && e.stack) || e));
  process.exit(1);
}
