#!/usr/bin/env node
// Drives a running `upg serve` with the official OpenAI Node SDK (openai 4.x) and checks that the
// answers have the shapes and the consistency the SDK and its users rely on.
//
//   UPG_SERVER_URL   base URL of the server (default http://127.0.0.1:18080)
//   UPG_MODELS       comma-separated model ids that GET /v1/models must list (optional)
//   UPG_MODEL        model used for the generation checks (default: first of UPG_MODELS, else
//                    the first model the server lists)
//   UPG_API_KEY      API key, if the server was started with one; also enables the 401 check
//   UPG_EXPECT_FILE  JSON file [{"model","prompt","max_tokens","text"}]: greedy completions that
//                    must come back exactly (optional)
//   UPG_TIMEOUT_S    per-request timeout (default 300)
//
// Prints one "ok" line per check; on the first failure prints the details and exits 1.
import fs from 'node:fs';

let OpenAI;
try {
  ({ default: OpenAI } = await import('openai'));
} catch (e) {
  console.error('FAIL: cannot load the openai package; run `npm ci` in tests/server first.\n' + e.message);
  process.exit(1);
}

const BASE = (process.env.UPG_SERVER_URL || 'http://127.0.0.1:18080').replace(/\/+$/, '');
const API_KEY = process.env.UPG_API_KEY || '';
const EXPECTED_MODELS = (process.env.UPG_MODELS || '').split(',').map((s) => s.trim()).filter(Boolean);
const TIMEOUT_MS = Number(process.env.UPG_TIMEOUT_S || 300) * 1000;

const client = new OpenAI({ baseURL: BASE + '/v1', apiKey: API_KEY || 'none', maxRetries: 0, timeout: TIMEOUT_MS });

class Fail extends Error {}
const ok = (msg) => console.log('ok   ' + msg);
const show = (x) => (x === undefined ? 'undefined' : JSON.stringify(x, null, 1).replace(/\n\s*/g, ' '));
function check(cond, msg, details) {
  if (!cond) throw new Fail(msg + (details === undefined ? '' : '\n  details: ' + show(details)));
}
const isInt = (x) => Number.isInteger(x) && x >= 0;
const isAscii = (s) => /^[\x00-\x7f]*$/.test(s);

// Expects `fn` to throw an OpenAI.APIError with `status` (and, when given, of class `cls`).
async function expectApiError(what, status, cls, fn) {
  let result;
  try {
    result = await fn();
  } catch (e) {
    check(e instanceof OpenAI.APIError, `${what}: expected an APIError, got ${e && e.constructor && e.constructor.name}: ${e && e.message}`);
    check(e.status === status, `${what}: expected HTTP ${status}, got ${e.status}: ${e.message}`, e.error);
    if (cls) check(e instanceof cls, `${what}: expected ${cls.name}, got ${e.constructor.name}`);
    check(e.error && typeof e.error.message === 'string' && e.error.message.length > 0,
      `${what}: the error body lacks {"error":{"message":...}}`, e.error);
    check(typeof e.error.type === 'string', `${what}: the error body lacks error.type`, e.error);
    return e;
  }
  throw new Fail(`${what}: expected HTTP ${status}, but the request succeeded`, result);
}

function checkUsage(what, usage, maxTokens) {
  check(usage && isInt(usage.prompt_tokens) && isInt(usage.completion_tokens) && isInt(usage.total_tokens),
    `${what}: usage lacks integer prompt_tokens/completion_tokens/total_tokens`, usage);
  check(usage.total_tokens === usage.prompt_tokens + usage.completion_tokens,
    `${what}: usage.total_tokens != prompt_tokens + completion_tokens`, usage);
  check(usage.prompt_tokens > 0, `${what}: usage.prompt_tokens is 0`, usage);
  if (maxTokens !== undefined) check(usage.completion_tokens <= maxTokens, `${what}: completion_tokens > max_tokens ${maxTokens}`, usage);
}

function checkFinish(what, finish, usage, maxTokens) {
  check(finish === 'stop' || finish === 'length', `${what}: finish_reason is ${show(finish)}, expected stop or length`);
  if (finish === 'length') {
    check(usage.completion_tokens === maxTokens, `${what}: finish_reason "length" but completion_tokens != max_tokens ${maxTokens}`, usage);
  }
}

async function main() {
  console.log(`server ${BASE}${API_KEY ? ' (with API key)' : ''}`);

  // --- GET /v1/models ---------------------------------------------------------------------------
  const list = await client.models.list();
  const ids = list.data.map((m) => m.id);
  for (const m of list.data) {
    check(typeof m.id === 'string' && m.object === 'model', 'models.list: each entry needs id and object "model"', m);
  }
  for (const want of EXPECTED_MODELS) check(ids.includes(want), `models.list: ${want} is not listed`, ids);
  check(ids.length > 0, 'models.list: no models');
  ok(`models.list: ${ids.join(', ')}`);
  const model = process.env.UPG_MODEL || EXPECTED_MODELS[0] || ids[0];
  check(ids.includes(model), `model ${model} is not listed`, ids);

  // --- chat, non-streaming ------------------------------------------------------------------------
  const chatReq = {
    model,
    messages: [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: 'Write one sentence about the history of the city.' },
    ],
    temperature: 0,
    max_tokens: 16,
  };
  const chat = await client.chat.completions.create(chatReq);
  check(chat.object === 'chat.completion', 'chat: object is not "chat.completion"', chat);
  check(typeof chat.id === 'string' && chat.id.length > 0, 'chat: no id', chat);
  check(Number.isInteger(chat.created), 'chat: created is not an integer', chat);
  check(chat.model === model, `chat: model is ${show(chat.model)}, expected ${model}`);
  check(Array.isArray(chat.choices) && chat.choices.length === 1, 'chat: expected exactly one choice', chat);
  const c0 = chat.choices[0];
  check(c0.index === 0, 'chat: choices[0].index != 0', c0);
  check(c0.message && c0.message.role === 'assistant' && typeof c0.message.content === 'string',
    'chat: choices[0].message is not {role: "assistant", content: string}', c0);
  checkUsage('chat', chat.usage, 16);
  checkFinish('chat', c0.finish_reason, chat.usage, 16);
  check(c0.message.content.length > 0 || chat.usage.completion_tokens <= 1, 'chat: empty content', chat);
  ok(`chat: ${show(c0.message.content)} (finish ${c0.finish_reason}, usage ${chat.usage.prompt_tokens}+${chat.usage.completion_tokens}=${chat.usage.total_tokens})`);

  // --- chat, streaming: same request, same text ---------------------------------------------------
  const stream = await client.chat.completions.create({ ...chatReq, stream: true, stream_options: { include_usage: true } });
  let text = '', nChunks = 0, nContent = 0, lastChoice = null, usageChunk = null, afterUsage = 0, role = null;
  for await (const chunk of stream) {
    nChunks += 1;
    check(chunk.object === 'chat.completion.chunk', 'stream: object is not "chat.completion.chunk"', chunk);
    check(chunk.model === model && typeof chunk.id === 'string', 'stream: chunk lacks id or the right model', chunk);
    check(Array.isArray(chunk.choices), 'stream: chunk.choices is not an array', chunk);
    if (usageChunk) afterUsage += 1;
    if (chunk.usage) {
      check(chunk.choices.length === 0, 'stream: the usage chunk must have empty choices', chunk);
      usageChunk = chunk;
    } else {
      check(chunk.choices.length === 1, 'stream: a chunk without usage must have one choice', chunk);
    }
    for (const ch of chunk.choices) {
      check(ch.index === 0 && ch.delta && typeof ch.delta === 'object', 'stream: choice lacks index 0 or delta', ch);
      if (ch.delta.role) role = ch.delta.role;
      if (typeof ch.delta.content === 'string' && ch.delta.content.length) { text += ch.delta.content; nContent += 1; }
      lastChoice = ch;
    }
  }
  check(role === null || role === 'assistant', `stream: delta.role is ${show(role)}`);
  check(text === c0.message.content, 'stream: concatenated deltas differ from the non-streaming content',
    { stream: text, nonstream: c0.message.content });
  check(usageChunk, 'stream: no usage chunk although stream_options.include_usage is true');
  check(afterUsage === 0, 'stream: chunks arrived after the usage chunk');
  checkUsage('stream', usageChunk.usage, 16);
  check(show(usageChunk.usage) === show(chat.usage), 'stream: usage differs from the non-streaming usage',
    { stream: usageChunk.usage, nonstream: chat.usage });
  check(lastChoice && lastChoice.finish_reason === c0.finish_reason,
    `stream: the last choice chunk has finish_reason ${show(lastChoice && lastChoice.finish_reason)}, expected ${c0.finish_reason}`, lastChoice);
  check(nContent > 1 || chat.usage.completion_tokens <= 1, `stream: the text arrived in ${nContent} piece(s)`);
  ok(`stream: ${nChunks} chunks (${nContent} with text), same text, usage chunk last, finish ${lastChoice.finish_reason}`);

  // --- legacy completions with echo and logprobs -------------------------------------------------
  const prompt = 'The history of the city';
  const cmp = await client.completions.create({ model, prompt, temperature: 0, max_tokens: 8, logprobs: 2, echo: true });
  check(cmp.object === 'text_completion', 'completions: object is not "text_completion"', cmp);
  check(cmp.model === model && Array.isArray(cmp.choices) && cmp.choices.length === 1, 'completions: bad model or choices', cmp);
  const k0 = cmp.choices[0];
  check(typeof k0.text === 'string' && k0.text.startsWith(prompt), 'completions: echo text does not start with the prompt', k0.text);
  checkUsage('completions', cmp.usage, 8);
  checkFinish('completions', k0.finish_reason, cmp.usage, 8);
  const lp = k0.logprobs;
  check(lp && Array.isArray(lp.tokens) && Array.isArray(lp.token_logprobs) && Array.isArray(lp.top_logprobs),
    'completions: logprobs lacks tokens/token_logprobs/top_logprobs arrays', lp);
  const n = lp.tokens.length;
  check(lp.token_logprobs.length === n && lp.top_logprobs.length === n, 'completions: logprobs arrays differ in length', lp);
  // With echo the prompt's tokens come first; a BOS token the tokenizer adds need not be echoed.
  check(n === cmp.usage.total_tokens || n === cmp.usage.total_tokens - 1,
    `completions: ${n} logprobs tokens, expected usage.total_tokens (${cmp.usage.total_tokens}) or one less (no BOS)`, lp.tokens);
  lp.tokens.forEach((t, i) => {
    check(typeof t === 'string', `completions: logprobs.tokens[${i}] is not a string`, t);
    const l = lp.token_logprobs[i];
    check((l === null && i === 0) || (typeof l === 'number' && l <= 0),
      `completions: token_logprobs[${i}] = ${show(l)}, expected a number <= 0 (null allowed for the first token only)`);
    const top = lp.top_logprobs[i];
    check((top === null && i === 0) || (top && typeof top === 'object' && Object.keys(top).length >= 1 && Object.keys(top).length <= 3 &&
      Object.values(top).every((v) => typeof v === 'number' && v <= 0)),
      `completions: top_logprobs[${i}] should be an object of 1..3 {token: logprob <= 0} (logprobs: 2, plus the chosen token)`, top);
  });
  if (isAscii(k0.text)) check(lp.tokens.join('') === k0.text, 'completions: logprobs.tokens do not spell the text', { tokens: lp.tokens, text: k0.text });
  if (lp.text_offset) {
    check(lp.text_offset.length === n && lp.text_offset[0] === 0 && lp.text_offset.every((x, i) => i === 0 || x >= lp.text_offset[i - 1]),
      'completions: text_offset should start at 0 and never decrease', lp.text_offset);
  }
  // The completion part: the last usage.completion_tokens entries; at temperature 0 each is the top choice.
  const nc = cmp.usage.completion_tokens;
  for (let i = n - nc; i < n; i++) {
    const best = Math.max(...Object.values(lp.top_logprobs[i]));
    check(Math.abs(lp.token_logprobs[i] - best) < 1e-3,
      `completions: generated token ${i} (${show(lp.tokens[i])}, ${lp.token_logprobs[i]}) is not the most likely at temperature 0`, lp.top_logprobs[i]);
  }
  const plain = await client.completions.create({ model, prompt, temperature: 0, max_tokens: 8 });
  check(plain.choices[0].text === k0.text.slice(prompt.length), 'completions: without echo the text differs from the echoed continuation',
    { echo: k0.text.slice(prompt.length), plain: plain.choices[0].text });
  check(plain.choices[0].logprobs === null || plain.choices[0].logprobs === undefined, 'completions: logprobs returned although not asked for', plain.choices[0].logprobs);
  ok(`completions (echo, logprobs 2): ${show(k0.text)}; ${n} tokens with logprobs; same continuation without echo`);

  // --- chat logprobs ------------------------------------------------------------------------------
  const lchat = await client.chat.completions.create({ ...chatReq, max_tokens: 8, logprobs: true, top_logprobs: 3 });
  const content = lchat.choices[0].logprobs && lchat.choices[0].logprobs.content;
  check(Array.isArray(content) && content.length > 0, 'chat logprobs: choices[0].logprobs.content is not a non-empty array', lchat.choices[0]);
  check(content.length === lchat.usage.completion_tokens, `chat logprobs: ${content.length} entries for ${lchat.usage.completion_tokens} completion tokens`);
  content.forEach((e, i) => {
    check(typeof e.token === 'string' && typeof e.logprob === 'number' && e.logprob <= 0,
      `chat logprobs: content[${i}] needs token (string) and logprob <= 0`, e);
    check(Array.isArray(e.top_logprobs) && e.top_logprobs.length === 3, `chat logprobs: content[${i}].top_logprobs should have 3 entries`, e);
    e.top_logprobs.forEach((t, j) => {
      check(typeof t.token === 'string' && typeof t.logprob === 'number' && t.logprob <= 0, `chat logprobs: content[${i}].top_logprobs[${j}] malformed`, t);
      if (j > 0) check(t.logprob <= e.top_logprobs[j - 1].logprob, `chat logprobs: content[${i}].top_logprobs not sorted descending`, e.top_logprobs);
    });
    if (e.bytes !== undefined && e.bytes !== null) {
      check(Array.isArray(e.bytes) && e.bytes.every((b) => Number.isInteger(b) && b >= 0 && b < 256), `chat logprobs: content[${i}].bytes malformed`, e);
    }
    check(Math.abs(e.logprob - e.top_logprobs[0].logprob) < 1e-3,
      `chat logprobs: at temperature 0 token ${i} should be the top choice`, e);
  });
  const ltext = lchat.choices[0].message.content;
  if (isAscii(ltext)) check(content.map((e) => e.token).join('') === ltext, 'chat logprobs: tokens do not spell the content', { content, text: ltext });
  check(c0.message.content.startsWith(ltext) || lchat.choices[0].finish_reason === 'stop',
    'chat logprobs: the 8-token greedy reply is not a prefix of the 16-token one', { short: ltext, long: c0.message.content });
  ok(`chat logprobs (top 3): ${content.map((e) => `${show(e.token)}:${e.logprob.toFixed(3)}`).join(' ')}`);

  // --- errors -------------------------------------------------------------------------------------
  await expectApiError('chat with n: 2', 400, OpenAI.BadRequestError,
    () => client.chat.completions.create({ ...chatReq, n: 2 }));
  ok('n: 2 rejected with 400 BadRequestError');
  await expectApiError('chat with an unknown model', 404, OpenAI.NotFoundError,
    () => client.chat.completions.create({ ...chatReq, model: 'no-such-model' }));
  await expectApiError('completions with an unknown model', 404, OpenAI.NotFoundError,
    () => client.completions.create({ model: 'no-such-model', prompt, max_tokens: 1 }));
  ok('unknown model rejected with 404 NotFoundError (chat and completions)');
  if (API_KEY) {
    const bad = new OpenAI({ baseURL: BASE + '/v1', apiKey: API_KEY + '-wrong', maxRetries: 0, timeout: TIMEOUT_MS });
    await expectApiError('models.list with a wrong key', 401, OpenAI.AuthenticationError, () => bad.models.list());
    await expectApiError('chat with a wrong key', 401, OpenAI.AuthenticationError, () => bad.chat.completions.create(chatReq));
    ok('wrong API key rejected with 401 AuthenticationError');
  } else {
    console.log('skip wrong-key check (UPG_API_KEY not set)');
  }

  // --- greedy equality against expected texts -----------------------------------------------------
  if (process.env.UPG_EXPECT_FILE) {
    const cases = JSON.parse(fs.readFileSync(process.env.UPG_EXPECT_FILE, 'utf8'));
    check(Array.isArray(cases) && cases.length > 0, `${process.env.UPG_EXPECT_FILE}: expected a non-empty JSON array`);
    for (const [i, c] of cases.entries()) {
      const r = await client.completions.create({ model: c.model, prompt: c.prompt, max_tokens: c.max_tokens, temperature: 0 });
      const got = r.choices[0].text;
      check(got === c.text, `expect[${i}] (${c.model}, ${show(c.prompt)}, max_tokens ${c.max_tokens}): text differs`,
        { expected: c.text, got });
      ok(`expect[${i}] ${c.model}: ${show(got)}`);
    }
  }
  console.log('PASS openai_sdk');
}

try {
  await main();
  process.exit(0);
} catch (e) {
  if (e instanceof Fail) console.error('FAIL: ' + e.message);
  else if (e instanceof OpenAI.APIConnectionError) console.error(`FAIL: cannot reach ${BASE}: ${e.message} ${(e.cause && e.cause.message) || ''}`);
  else if (e instanceof OpenAI.APIError) console.error(`FAIL: unexpected API error ${e.status} ${e.constructor.name}: ${e.message}\n  body: ${show(e.error)}`);
  else console.error('FAIL: ' + ((e && e.stack) || e));
  process.exit(1);
}
