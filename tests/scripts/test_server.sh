#!/usr/bin/env bash
# End-to-end test of `upg serve` with real clients (Node: the openai SDK, headless Chromium, a load
# driver and a fault injector in tests/server). Argument 1: the upg binary. Run from anywhere:
#
#   bash tests/scripts/test_server.sh build/upg
#
# 1. Server A: refA-phi3-26m and a random 3.2-bit synth model of its shape, with an API key,
#    --max-batch 16: openai_sdk.test.mjs (greedy completions must equal `upg run --temp 0`),
#    chat_page.test.mjs (exit 77 = no Chromium: skipped), load.mjs --mode check (64 concurrent
#    streams + a few chat streams, equal to the single-request replies; cache blocks freed; RSS),
#    then SIGTERM while a stream runs: the stream completes, a new request gets 503, exit 0.
# 2. Server B: --max-body 64K -c 256 --max-batch 1 --max-queue 1 --shutdown-grace 0: faults.mjs,
#    then SIGINT while a stream runs and a non-streamed request waits: both are cancelled with
#    errors (the stream: an error event and [DONE]; the other: HTTP 503), exit 0.
# 3. Server C: refA with --tp 2 (two ranks of threads): openai_sdk.test.mjs, greedy completions
#    equal to `upg run` on the whole model.
#
# Skips (exit 0, "SKIP: ...") without ../shared/data, node, or tests/server/node_modules.
# UPG_SERVE_TEST_LOAD_ARGS / UPG_SERVE_TEST_FAULTS_ARGS: extra arguments for load.mjs / faults.mjs.
# Server bugs this test found and that were fixed: a listen backlog of 5 (load.mjs's connection
# bursts guard it), --max-body not bounding chunked bodies (faults.mjs's chunked-body-cap), a
# non-streamed request cancelled at shutdown answered "200" with an error object (the SIGINT step).
set -uo pipefail
[ $# -ge 1 ] && [ -x "$1" ] || { echo "usage: bash tests/scripts/test_server.sh path/to/upg"; exit 2; }
UPG="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
MODEL=../shared/data/models/refA-phi3-26m
REFA=refA-phi3-26m
KEY="upg-test-key-$$"
# libgomp's default spin-waiting collapses when another process competes for the cores (on 2 busy
# cores `upg run -t 2` fell from ~450 to ~5 tokens/s); passive waiting keeps this test's time
# bounded under `ctest -j` or a busy machine. It changes no result.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
GRACE=60  # server A: the running stream must finish within it, also on a busy machine

if [ ! -d ../shared/data ] || [ ! -f "$MODEL/config.json" ]; then
  echo "SKIP: ../shared/data (with models/refA-phi3-26m) is absent; test_server needs the reference model"
  exit 0
fi
if ! command -v node >/dev/null 2>&1; then
  echo "SKIP: node is not installed (Node >= 18 is needed: apt-get install nodejs npm; then cd tests/server && npm ci)"
  exit 0
fi
if [ ! -d tests/server/node_modules/openai ] || [ ! -d tests/server/node_modules/playwright-core ]; then
  echo "SKIP: tests/server/node_modules is absent or incomplete; install it with: cd tests/server && npm ci"
  exit 0
fi
if [ "$(node -p 'Number(process.versions.node.split(".")[0]) >= 18')" != "true" ]; then
  echo "SKIP: node $(node --version) is too old; the server tests need Node >= 18"
  exit 0
fi

T=$(mktemp -d)
cleanup() {
  local p
  for p in $(jobs -p); do kill -9 "$p" 2>/dev/null; done  # servers still running (only this shell's jobs)
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
TIMES=()
t_start() { T0=$(date +%s.%N); echo; echo "=== $1"; }
t_end() {
  local s
  s=$($PY -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$T0" "$(date +%s.%N)")
  TIMES+=("$(printf '%-44s %6s s  %s' "$1" "$s" "$2")")
  echo "--- $1: $2 ($s s)"
}
free_port() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
# wait_health URL PID LOG: until GET URL/health answers 200 (60 s), or the server died.
wait_health() {
  local url=$1 pid=$2 log=$3 i
  for i in $(seq 1 600); do
    if ! kill -0 "$pid" 2>/dev/null; then echo "the server exited during start-up:"; sed 's/^/  | /' "$log" | tail -n 20; return 1; fi
    if $PY -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/health", timeout=2).read()' "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "no answer from $url/health after 60 s"; sed 's/^/  | /' "$log" | tail -n 20
  return 1
}
# stop_server PID SIGNAL LOG LIMIT_S [sent]: sends the signal (unless "sent": someone did), waits up
# to LIMIT_S for the exit; sets STOP_RC and STOP_S.
stop_server() {
  local pid=$1 sig=$2 log=$3 limit=$4 sent=${5:-} t0 i
  t0=$(date +%s.%N)
  [ "$sent" = sent ] || kill "-$sig" "$pid" 2>/dev/null
  for i in $(seq 1 $((limit * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    fail "the server did not exit within ${limit} s of SIG$sig"; kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    STOP_RC=137; STOP_S=">$limit"; return
  fi
  wait "$pid"; STOP_RC=$?
  STOP_S=$($PY -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$t0" "$(date +%s.%N)")
  [ "$STOP_RC" -eq 0 ] || { fail "the server exited with status $STOP_RC after SIG$sig, expected 0"; sed 's/^/  | /' "$log" | tail -n 15; }
  grep -q "upg serve: SIG$sig, shutting down" "$log" || fail "the server log lacks 'SIG$sig, shutting down'"
  grep -q "upg serve: stopped" "$log" || fail "the server log lacks 'upg serve: stopped'"
}

# ------------------------------------------------------------------------------------------------
t_start "synth model and expected greedy texts"
"$UPG" synth --config "$MODEL/config.json" --tokenizer "$MODEL" --bpw 3.2 -o "$T/synth.upg" >"$T/synth.log" 2>&1 \
  || { fail "upg synth failed"; sed 's/^/  | /' "$T/synth.log" | tail -n 10; }
# The text `upg run` generates after the prompt: it prints the prompt, the continuation, "\n".
$PY - "$UPG" "$MODEL" "$REFA" "$T/synth.upg" synth >"$T/expect.json" 2>"$T/expect.err" <<'EOF'
import json, subprocess, sys
upg, cases = sys.argv[1], []
prompts = ["The history of the city", "Once upon a time there was a little girl who", "The weather today is"]
for path, mid in ((sys.argv[2], sys.argv[3]), (sys.argv[4], sys.argv[5])):
    for p in prompts:
        n = 24
        out = subprocess.run([upg, "run", path, "-p", p, "-n", str(n), "--temp", "0", "--repeat-penalty", "1", "-t", "2"],
                             capture_output=True, check=True).stdout
        head = p.encode()
        assert out.startswith(head) and out.endswith(b"\n"), f"unexpected `upg run` output: {out!r}"
        cases.append({"model": mid, "prompt": p, "max_tokens": n, "text": out[len(head):-1].decode("utf-8")})
        print(f"upg run {mid} {p!r} -> {cases[-1]['text']!r}", file=sys.stderr)
json.dump(cases, sys.stdout, ensure_ascii=False, indent=1)
EOF
[ $? -eq 0 ] || { fail "making the expected texts with upg run failed"; }
sed 's/^/  /' "$T/expect.err"
t_end "synth model and expected greedy texts" "$(grep -c '"text"' "$T/expect.json") cases"

# ------------------------------------------------------------------------------------------------
t_start "server A start"
PORT_A=$(free_port)
URL_A="http://127.0.0.1:$PORT_A"
"$UPG" serve -m "$MODEL" -m "$T/synth.upg" --port "$PORT_A" --api-key "$KEY" -t 2 --max-batch 16 \
  --shutdown-grace "$GRACE" >"$T/serve_a.log" 2>&1 &
PID_A=$!
if wait_health "$URL_A" "$PID_A" "$T/serve_a.log"; then
  t_end "server A start" "pid $PID_A, $URL_A"
  export UPG_SERVER_URL="$URL_A" UPG_API_KEY="$KEY"

  t_start "openai_sdk.test.mjs"
  UPG_MODELS="$REFA,synth" UPG_MODEL="$REFA" UPG_EXPECT_FILE="$T/expect.json" node tests/server/openai_sdk.test.mjs
  rc=$?; [ $rc -eq 0 ] || fail "openai_sdk.test.mjs exited $rc"
  t_end "openai_sdk.test.mjs" "exit $rc"

  t_start "curl: the raw SSE stream"
  # The bytes on the wire, read by curl: every event is "data: <json>" and a blank line, the chunks
  # are chat.completion.chunk objects whose deltas join to the non-streamed reply, the usage chunk
  # comes last, then "data: [DONE]".
  body='{"model": "'"$REFA"'", "messages": [{"role": "user", "content": "Tell me about the city."}], "max_tokens": 20, "temperature": 0'
  curl -sS -N -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d "$body, \"stream\": true, \"stream_options\": {\"include_usage\": true}}" "$URL_A/v1/chat/completions" >"$T/sse.txt"
  rc=$?
  curl -sS -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d "$body}" \
    "$URL_A/v1/chat/completions" >"$T/whole.json" || rc=$?
  if [ $rc -eq 0 ]; then
    $PY - "$T/sse.txt" "$T/whole.json" <<'PYEOF' || rc=1
import json, sys
raw = open(sys.argv[1], encoding="utf-8").read()
whole = json.load(open(sys.argv[2]))
assert raw.endswith("data: [DONE]\n\n"), "the stream does not end with data: [DONE]"
events = raw.split("\n\n")[:-1]
assert all(e.startswith("data: ") for e in events), "an event is not a data: line"
chunks = [json.loads(e[6:]) for e in events[:-1]]
assert all(c["object"] == "chat.completion.chunk" for c in chunks)
assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
assert text == whole["choices"][0]["message"]["content"], (text, whole["choices"][0]["message"]["content"])
assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"], "usage chunk"
print(f"ok   curl: {len(events)} events, text {text!r}, usage {whole['usage']}")
PYEOF
  fi
  [ $rc -eq 0 ] || fail "the raw SSE stream read by curl is wrong (see above)"
  t_end "curl: the raw SSE stream" "exit $rc"

  t_start "chat_page.test.mjs"
  SHOT="$(dirname "$UPG")/test_server_chat_page.png"
  UPG_MODEL="$REFA" UPG_SCREENSHOT="$SHOT" node tests/server/chat_page.test.mjs
  rc=$?
  case $rc in
    0) note="exit 0, screenshot $SHOT" ;;
    77) note="skipped (exit 77)" ;;
    *) fail "chat_page.test.mjs exited $rc"; note="exit $rc" ;;
  esac
  t_end "chat_page.test.mjs" "$note"

  t_start "load.mjs --mode check (64 clients)"
  # shellcheck disable=SC2086
  node tests/server/load.mjs --mode check --url "$URL_A" --key "$KEY" --models "$REFA,synth" --clients 64 \
    --max-tokens 24 --prompts 8 --chat-streams 4 --pid "$PID_A" --out "$T/load.json" ${UPG_SERVE_TEST_LOAD_ARGS:-}
  rc=$?; [ $rc -eq 0 ] || fail "load.mjs --mode check exited $rc"
  t_end "load.mjs --mode check (64 clients)" "exit $rc"

  t_start "server A: SIGTERM during a stream"
  # A stream (300 tokens) is running when SIGTERM arrives: it must finish (the grace is $GRACE s),
  # a request sent during the drain must get 503, and the server must exit 0 by itself.
  cat >"$T/drain.mjs" <<'EOF'
const [url, key, model, pid] = process.argv.slice(2);
const H = { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' };
const res = await fetch(url + '/v1/completions', { method: 'POST', headers: H, body: JSON.stringify(
  { model, prompt: 'The history of the city', max_tokens: 300, ignore_eos: true, temperature: 0, stream: true,
    stream_options: { include_usage: true } }) });
if (res.status !== 200) { console.log(`FAIL: the stream got HTTP ${res.status}: ${await res.text()}`); process.exit(1); }
const dec = new TextDecoder();
let buf = '', signalled = false, done = false, finish = null, usage = null, late = null, err = null;
for await (const b of res.body) {
  buf += dec.decode(b, { stream: true });
  let k;
  while ((k = buf.indexOf('\n\n')) >= 0) {
    const line = buf.slice(0, k); buf = buf.slice(k + 2);
    if (!line.startsWith('data: ')) continue;
    if (line === 'data: [DONE]') { done = true; continue; }
    const j = JSON.parse(line.slice(6));
    if (j.error) err = j.error;
    if (j.usage) usage = j.usage;
    for (const c of j.choices || []) if (c.finish_reason) finish = c.finish_reason;
    if (!signalled) {
      signalled = true;
      process.kill(Number(pid), 'SIGTERM');
      await new Promise((r) => setTimeout(r, 50));
      late = await fetch(url + '/v1/completions', { method: 'POST', headers: H,
        body: JSON.stringify({ model, prompt: 'Hello', max_tokens: 2 }) }).then(async (r) => `${r.status} ${await r.text()}`, (e) => `error ${e.message}`);
    }
  }
}
console.log(`stream after SIGTERM: finish ${finish}, [DONE] ${done}, usage ${JSON.stringify(usage)}; a new request got: ${late}`);
if (err || !done || finish !== 'length' || !usage || usage.completion_tokens !== 300) { console.log('FAIL: the running stream did not complete', err || ''); process.exit(1); }
if (!late || !late.startsWith('503 ')) { console.log('FAIL: a request during shutdown should get 503'); process.exit(1); }
EOF
  node "$T/drain.mjs" "$URL_A" "$KEY" "$REFA" "$PID_A"
  rc=$?; [ $rc -eq 0 ] || fail "the SIGTERM drain check failed"
  stop_server "$PID_A" TERM "$T/serve_a.log" $((GRACE + 10)) sent
  t_end "server A: SIGTERM during a stream" "exit $STOP_RC, $STOP_S s after the stream ended"
else
  fail "server A did not start"
fi

# ------------------------------------------------------------------------------------------------
t_start "server B start (small limits)"
PORT_B=$(free_port)
URL_B="http://127.0.0.1:$PORT_B"
"$UPG" serve -m "$MODEL" --port "$PORT_B" --api-key "$KEY" -t 2 --max-body 64K -c 256 --max-batch 1 --max-queue 1 \
  --shutdown-grace 0 >"$T/serve_b.log" 2>&1 &
PID_B=$!
if wait_health "$URL_B" "$PID_B" "$T/serve_b.log"; then
  t_end "server B start (small limits)" "pid $PID_B, $URL_B"
  t_start "faults.mjs"
  # shellcheck disable=SC2086
  node tests/server/faults.mjs --url "$URL_B" --key "$KEY" ${UPG_SERVE_TEST_FAULTS_ARGS:-}
  rc=$?; [ $rc -eq 0 ] || fail "faults.mjs exited $rc"
  t_end "faults.mjs" "exit $rc"
  t_start "server B: SIGINT cancels running and queued requests"
  # --shutdown-grace 0: a running stream and a queued non-streamed request are cancelled at SIGINT.
  # The stream must end with an error event and [DONE]; the non-streamed request must get an error
  # status (503), not "200 OK" with an error object where the OpenAI SDK expects a completion.
  cat >"$T/cancel.mjs" <<'EOF'
const [url, key, model, pid] = process.argv.slice(2);
const H = { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' };
const body = (stream) => JSON.stringify({ model, prompt: 'The history of the city', max_tokens: 240, ignore_eos: true, stream });
const res = await fetch(url + '/v1/completions', { method: 'POST', headers: H, body: body(true) });
if (res.status !== 200) { console.log(`FAIL: the stream got HTTP ${res.status}`); process.exit(1); }
const dec = new TextDecoder();
let buf = '', signalled = false, done = false, finish = null, err = null, queued = null;
for await (const b of res.body) {
  buf += dec.decode(b, { stream: true });
  let k;
  while ((k = buf.indexOf('\n\n')) >= 0) {
    const line = buf.slice(0, k); buf = buf.slice(k + 2);
    if (!line.startsWith('data: ')) continue;
    if (line === 'data: [DONE]') { done = true; continue; }
    const j = JSON.parse(line.slice(6));
    if (j.error) err = j.error;
    for (const c of j.choices || []) if (c.finish_reason) finish = c.finish_reason;
    if (!signalled) {
      signalled = true;
      queued = fetch(url + '/v1/completions', { method: 'POST', headers: H, body: body(false) })
        .then(async (r) => ({ status: r.status, text: await r.text() }), (e) => ({ status: 0, text: e.message }));
      for (let i = 0; i < 100; i++) {  // until the second request waits in the queue
        const m = await (await fetch(url + '/metrics', { headers: H })).text();
        if (/^upg_queue_depth\{[^}]*\} 1$/m.test(m)) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      process.kill(Number(pid), 'SIGINT');
    }
  }
}
const q = await queued;
console.log(`running stream: finish ${finish}, error ${JSON.stringify(err)}, [DONE] ${done}`);
console.log(`queued non-streamed request: HTTP ${q.status} ${q.text.trim().slice(0, 300)}`);
let bad = 0;
if (!err || err.type !== 'server_error' || !done || finish) { console.log('FAIL: the cancelled stream should end with an error event and [DONE], without a finish_reason'); bad++; }
let j = null; try { j = JSON.parse(q.text); } catch {}
if (!(j && j.error)) { console.log('FAIL: the cancelled non-streamed request should get an error object'); bad++; }
else if (q.status === 200) {
  console.log('FAIL: the cancelled non-streamed request got HTTP 200 with an error object (expected 503): OpenAI clients take it for a completion without choices');
  bad++;
}
process.exit(bad ? 1 : 0);
EOF
  kill -0 "$PID_B" 2>/dev/null || fail "server B died during the faults"
  node "$T/cancel.mjs" "$URL_B" "$KEY" "$REFA" "$PID_B"
  rc=$?; [ $rc -eq 0 ] || fail "the SIGINT cancel check failed"
  stop_server "$PID_B" INT "$T/serve_b.log" 20 sent
  t_end "server B: SIGINT cancels running and queued requests" "exit $STOP_RC, $STOP_S s after the requests ended"
else
  fail "server B did not start"
fi

# ------------------------------------------------------------------------------------------------
t_start "server C: --tp 2"
# refA split over two ranks (threads with host collectives): the OpenAI SDK checks again, its greedy
# completions equal to `upg run` on the whole model (an f32 cache on both: only fp32 rounding
# separates the split sums from the whole ones).
"$PY" - "$UPG" "$MODEL" "$REFA" >"$T/expect_tp.json" 2>"$T/expect_tp.err" <<'EOF'
import json, subprocess, sys
upg, path, mid = sys.argv[1:4]
cases = []
for p in ["The history of the city", "Once upon a time there was a little girl who"]:
    out = subprocess.run([upg, "run", path, "-p", p, "-n", "24", "--temp", "0", "--repeat-penalty", "1", "-t", "2",
                          "--kv-type", "f32"], capture_output=True, check=True).stdout
    cases.append({"model": mid, "prompt": p, "max_tokens": 24, "text": out[len(p.encode()):-1].decode("utf-8")})
json.dump(cases, sys.stdout, ensure_ascii=False)
EOF
[ $? -eq 0 ] || { fail "making the expected texts for --tp failed"; sed 's/^/  | /' "$T/expect_tp.err" | tail -n 5; }
PORT_C=$(free_port)
URL_C="http://127.0.0.1:$PORT_C"
"$UPG" serve -m "$MODEL" --port "$PORT_C" -t 2 --tp 2 --kv-type f32 >"$T/serve_c.log" 2>&1 &
PID_C=$!
if wait_health "$URL_C" "$PID_C" "$T/serve_c.log"; then
  UPG_SERVER_URL="$URL_C" UPG_API_KEY="" UPG_MODELS="$REFA" UPG_MODEL="$REFA" UPG_EXPECT_FILE="$T/expect_tp.json" \
    node tests/server/openai_sdk.test.mjs > "$T/sdk_tp.log" 2>&1
  rc=$?; [ $rc -eq 0 ] || { fail "openai_sdk.test.mjs against --tp 2 exited $rc"; tail -n 15 "$T/sdk_tp.log" | sed 's/^/  | /'; }
  stop_server "$PID_C" TERM "$T/serve_c.log" 20
  t_end "server C: --tp 2" "sdk exit $rc, $(grep -c '^ok' "$T/sdk_tp.log") checks"
else
  fail "server C did not start"
fi

echo
echo "=== timings"
for l in "${TIMES[@]}"; do echo "  $l"; done
if [ "$fails" -ne 0 ]; then
  echo "test_server: $fails failure(s)"
  exit 1
fi
echo "test_server: all checks passed"
