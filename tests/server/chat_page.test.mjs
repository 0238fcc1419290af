#!/usr/bin/env node
// Drives the chat page that `upg serve` serves at GET / with headless Chromium (Debian's
// /usr/bin/chromium through playwright-core): loads the model list, sends a message, waits for the
// streamed reply, then sends a second message (multi-turn) and presses Stop while it streams.
//
//   UPG_SERVER_URL   base URL of a running server (default http://127.0.0.1:18080)
//   UPG_SCREENSHOT   where to write a PNG of the page after the first reply (default chat_page.png)
//   UPG_API_KEY      API key, if the server needs one (put into the page's localStorage)
//   UPG_MODEL        model to pick (default: the first one the page lists)
//   UPG_CHROMIUM     browser binary (default /usr/bin/chromium)
//   UPG_TIMEOUT_S    how long to wait for a reply (default 120)
//
// Exit status: 0 pass, 1 fail, 77 skipped (no Chromium).
import fs from 'node:fs';
import path from 'node:path';

const BASE = (process.env.UPG_SERVER_URL || 'http://127.0.0.1:18080').replace(/\/+$/, '');
const SHOT = process.env.UPG_SCREENSHOT || 'chat_page.png';
const API_KEY = process.env.UPG_API_KEY || '';
const WANT_MODEL = process.env.UPG_MODEL || '';
const CHROMIUM = process.env.UPG_CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = Number(process.env.UPG_TIMEOUT_S || 120) * 1000;
const PROMPT = 'Tell me about the history of the city.';

if (!fs.existsSync(CHROMIUM)) {
  console.log('SKIP: chromium not installed');
  process.exit(77);
}

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  console.error('FAIL: cannot load playwright-core; run `npm ci` in tests/server first.\n' + e.message);
  process.exit(1);
}

class Fail extends Error {}
const fail = (msg) => { throw new Fail(msg); };
const ok = (msg) => console.log('ok   ' + msg);

let browser;
const pageErrors = [];
const consoleErrors = [];
const chatRequests = [];
let page;

async function transcriptText() {
  try { return await page.locator('#transcript').innerText({ timeout: 2000 }); } catch { return '(unavailable)'; }
}

// Waits for the n-th (0-based) assistant reply to be marked done; fails early on an error turn.
async function waitForReply(n) {
  const sel = `.msg.assistant[data-done="1"]`;
  await page.waitForFunction(({ sel, n }) =>
    document.querySelectorAll(sel).length > n || document.querySelector('.msg.error') !== null,
  { sel, n }, { timeout: TIMEOUT_MS, polling: 100 }).catch(async (e) => {
    fail(`no finished assistant reply #${n + 1} after ${TIMEOUT_MS / 1000} s (${e.message.split('\n')[0]}).\n` +
      `Transcript:\n${await transcriptText()}`);
  });
  const errors = await page.locator('.msg.error').allInnerTexts();
  if (errors.length) fail(`the page shows an error: ${errors.join(' | ')}`);
  const reply = page.locator(sel).nth(n);
  return {
    text: await reply.evaluate((el) => el.textContent),
    chunks: Number(await reply.getAttribute('data-chunks')),
    finish: await reply.getAttribute('data-finish'),
    stopped: await reply.getAttribute('data-stopped') === '1',
    stats: await reply.evaluate((el) => {
      const s = el.parentElement && el.parentElement.querySelector('.stats');
      return s ? s.textContent : '';
    }),
  };
}

try {
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  } catch (e) {
    fail(`cannot launch ${CHROMIUM}: ${e.message}`);
  }
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  if (API_KEY) {
    await context.addInitScript((key) => { window.localStorage.setItem('upg.api_key', key); }, API_KEY);
  }
  page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url().endsWith('/v1/chat/completions')) chatRequests.push(r.postData());
  });

  // 1. The page itself.
  const resp = await page.goto(BASE + '/', { waitUntil: 'load', timeout: 30000 }).catch((e) => fail(`GET ${BASE}/ failed: ${e.message}`));
  if (!resp || resp.status() !== 200) fail(`GET ${BASE}/ returned HTTP ${resp && resp.status()}`);
  const ctype = resp.headers()['content-type'] || '';
  if (!ctype.startsWith('text/html')) fail(`GET / has Content-Type "${ctype}", expected text/html`);
  for (const id of ['model', 'system', 'input', 'send', 'stop', 'transcript']) {
    if (await page.locator('#' + id).count() !== 1) fail(`the page has no element #${id}`);
  }
  ok(`GET / serves the chat page (${ctype})`);

  // 2. The model list fills from GET /v1/models.
  await page.waitForSelector('#model[data-ready="1"]', { timeout: 30000 }).catch(async () => {
    fail(`the model list did not fill. Status: "${await page.locator('#status').innerText()}". ` +
      `Transcript: ${await transcriptText()}`);
  });
  const models = await page.locator('#model option').evaluateAll((os) => os.map((o) => o.value));
  if (!models.length || models.some((m) => !m)) fail(`bad model options: ${JSON.stringify(models)}`);
  if (WANT_MODEL) {
    if (!models.includes(WANT_MODEL)) fail(`model ${WANT_MODEL} is not listed (listed: ${models.join(', ')})`);
    await page.selectOption('#model', WANT_MODEL);
  }
  const model = await page.locator('#model').inputValue();
  ok(`model list: ${models.join(', ')}; using ${model}`);

  // 3. First message: settings, type, click Send, wait for the streamed reply.
  await page.fill('#system', 'You are a helpful assistant.');
  await page.fill('#temperature', '0');
  await page.fill('#max_tokens', '48');
  await page.fill('#input', PROMPT);
  const t0 = Date.now();
  await page.click('#send');
  if (await page.locator('.msg.user').count() !== 1) fail('the user turn did not appear in the transcript');
  const first = await waitForReply(0);
  const seconds = (Date.now() - t0) / 1000;
  if (!first.text || !first.text.trim()) fail(`the reply is empty (stats: "${first.stats}")`);
  if (!(first.chunks > 1)) fail(`the reply arrived in ${first.chunks} piece(s); streaming should give more than one`);
  const sent = JSON.parse(chatRequests[0] || '{}');
  const wantMessages = [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: PROMPT }];
  if (sent.model !== model || sent.stream !== true || sent.temperature !== 0 || sent.max_tokens !== 48 ||
      !sent.stream_options || sent.stream_options.include_usage !== true ||
      JSON.stringify(sent.messages) !== JSON.stringify(wantMessages)) {
    fail(`unexpected request body: ${chatRequests[0]}`);
  }
  ok(`reply streamed in ${first.chunks} pieces in ${seconds.toFixed(1)} s, finish_reason ${first.finish}`);
  if (!/completion tokens/.test(first.stats) || !/tokens\/s/.test(first.stats)) {
    fail(`the stats line lacks token counts or speed: "${first.stats}" (did the usage chunk arrive?)`);
  }
  ok(`stats line: ${first.stats}`);
  console.log('reply: ' + JSON.stringify(first.text));

  fs.mkdirSync(path.dirname(path.resolve(SHOT)), { recursive: true });
  await page.screenshot({ path: SHOT, fullPage: true });
  ok(`screenshot written to ${SHOT}`);

  // 4. Second message with Enter: the request carries the whole conversation; Stop aborts it.
  await page.fill('#max_tokens', '400');
  await page.fill('#input', 'Go on.');
  await page.press('#input', 'Enter');
  await page.waitForFunction(() => {
    const r = document.querySelectorAll('.msg.assistant');
    return r.length === 2 && (Number(r[1].dataset.chunks) > 0 || r[1].dataset.done === '1');
  }, null, { timeout: TIMEOUT_MS, polling: 50 }).catch(async (e) => {
    fail(`the second reply did not start (${e.message.split('\n')[0]}). Transcript:\n${await transcriptText()}`);
  });
  if (await page.locator('#stop').isEnabled()) await page.click('#stop');
  const second = await waitForReply(1);
  const sent2 = JSON.parse(chatRequests[1] || '{}');
  const roles = (sent2.messages || []).map((m) => m.role).join(',');
  if (roles !== 'system,user,assistant,user' || sent2.messages[2].content !== first.text) {
    fail(`the second request does not carry the conversation: ${chatRequests[1]}`);
  }
  ok(`second turn sent the whole conversation (${roles}); ` +
    (second.stopped ? `Stop aborted it after ${second.chunks} pieces` : `it finished (${second.finish}) before Stop`));
  if (await page.locator('#send').isDisabled()) fail('Send is still disabled after the reply ended');

  // 5. The server still answers after the aborted stream.
  const r = await page.evaluate(async (key) => {
    const res = await fetch('v1/models', { headers: key ? { Authorization: 'Bearer ' + key } : {} });
    return res.status;
  }, API_KEY);
  if (r !== 200) fail(`GET /v1/models after the aborted stream returned HTTP ${r}`);
  ok('server still answers after the aborted stream');

  if (pageErrors.length) fail(`JavaScript errors on the page: ${pageErrors.join(' | ')}`);
  if (consoleErrors.length) console.log('note: console errors: ' + consoleErrors.join(' | '));
  console.log('PASS chat_page');
  await browser.close();
  process.exit(0);
} catch (e) {
  console.error('FAIL: ' + (e instanceof Fail ? e.message : (e && e.stack) || e));
  if (page) {
    const failShot = SHOT.replace(/(\.png)?$/, '.fail.png');
    await page.screenshot({ path: failShot, fullPage: true }).then(() => console.error(`(screenshot of the failure: ${failShot})`), () => {});
  }
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
