#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets (tests/fuzz/corpus_<name>/) from real files:
configs of tests/golden and ../shared/data, the reference model's tokenizer files (cut down to a
few hundred tokens so runs stay fast), the chat templates of tests/data/chat_templates, and small
hand-made safetensors files and server request bodies. Run from the project root when the seeds
should change: python3 tests/fuzz/make_seeds.py. (corpus_upg_header and corpus_gguf_vocab are
written by their targets: UPG_FUZZ_SEED_DIR, see run_fuzz.sh.)"""
import glob
import json
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(ROOT, "..", "shared", "data")
OUT = os.path.join(ROOT, "tests", "fuzz")


def put(name, fname, data):
    d = os.path.join(OUT, "corpus_" + name)
    fname = re.sub(r"[^A-Za-z0-9._-]+", "_", fname).strip("_")
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, fname), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def compact(j):
    return json.dumps(j, ensure_ascii=False, separators=(",", ":"))


# ---- config.json / generation_config.json
for p in sorted(glob.glob(os.path.join(ROOT, "tests", "golden", "*", "config.json"))):
    put("model_config", "golden_" + os.path.basename(os.path.dirname(p)) + ".json", compact(json.loads(read(p))))
for p in sorted(glob.glob(os.path.join(SHARED, "configs", "*.config.json"))):
    put("model_config", os.path.basename(p), compact(json.loads(read(p))))
for sub in ("models/refA-phi3-26m", "tokenizers/qwen2"):
    for f in ("config.json", "generation_config.json"):
        p = os.path.join(SHARED, sub, f)
        if os.path.exists(p):
            put("model_config", sub.split("/")[-1] + "_" + f, compact(json.loads(read(p))))
ex = os.path.join(SHARED, "configs", "onnx-tool_llm_configs_extract.json")
if os.path.exists(ex):
    j = json.loads(read(ex))
    items = j.items() if isinstance(j, dict) else enumerate(j)
    for k, v in list(items)[:6]:
        if isinstance(v, dict):
            put("model_config", "extract_" + str(k).replace("/", "_") + ".json", compact(v))

# ---- tokenizer.json: the reference tokenizer cut to its first tokens, and variants of its parts
ref = os.path.join(SHARED, "models", "refA-phi3-26m", "tokenizer.json")
if os.path.exists(ref):
    tj = json.loads(read(ref))
    m = tj["model"]
    keep = {t: i for t, i in m["vocab"].items() if i < 300}
    merges = []
    for mg in m["merges"]:
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        if a in keep and b in keep and a + b in keep:
            merges.append(mg)
    small = dict(tj)
    small["model"] = dict(m, vocab=keep, merges=merges)
    small["added_tokens"] = [dict(t, id=300 + k) for k, t in enumerate(tj.get("added_tokens", [])[:6])]
    put("tokenizer_json", "refA_small.json", compact(small))
    for key in ("normalizer", "pre_tokenizer", "decoder", "post_processor"):
        v = dict(small)
        v[key] = None
        put("tokenizer_json", "refA_small_no_" + key + ".json", compact(v))

sp_vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
for b in range(256):
    sp_vocab["<0x%02X>" % b] = 3 + b
for k, piece in enumerate(["\u2581", "\u2581H", "e", "l", "o", "\u2581Hello", "ll", "He", "\u2581w", "or", "ld"]):
    sp_vocab[piece] = 259 + k
sentencepiece = {
    "version": "1.0",
    "model": {"type": "BPE", "vocab": sp_vocab, "merges": ["H e", "l l", "\u2581 w", "o r", "l d"],
              "unk_token": "<unk>", "byte_fallback": True, "fuse_unk": True, "dropout": None},
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                       {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
    "pre_tokenizer": None,
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
        {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    "added_tokens": [{"id": 0, "content": "<unk>", "special": True}, {"id": 1, "content": "<s>", "special": True},
                     {"id": 2, "content": "</s>", "special": True}],
}
put("tokenizer_json", "sentencepiece.json", compact(sentencepiece))
meta = dict(sentencepiece, normalizer=None,
            pre_tokenizer={"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True},
            decoder={"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True})
put("tokenizer_json", "metaspace.json", compact(meta))
split = dict(sentencepiece, normalizer={"type": "NFKC"},
             pre_tokenizer={"type": "Sequence", "pretokenizers": [
                 {"type": "Split", "pattern": {"Regex": "(?i:'s|'t)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
                  "behavior": "Isolated", "invert": False},
                 {"type": "Digits", "individual_digits": True}, {"type": "WhitespaceSplit"}]},
             post_processor={"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1],
                             "trim_offsets": True, "add_prefix_space": False})
put("tokenizer_json", "split_digits.json", compact(split))
ws = dict(sentencepiece, normalizer={"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "Lowercase"},
                                                                         {"type": "Strip", "strip_left": True, "strip_right": True}]},
          pre_tokenizer={"type": "Whitespace"}, post_processor=None,
          added_tokens=sentencepiece["added_tokens"] + [{"id": 270, "content": "<tool>", "special": False, "lstrip": True,
                                                          "rstrip": True, "single_word": True, "normalized": True}])
put("tokenizer_json", "whitespace_lower.json", compact(ws))

# ---- tokenizer_config.json / generation_config.json
for sub in ("models/refA-phi3-26m", "tokenizers/qwen2"):
    for f in ("tokenizer_config.json", "generation_config.json", "special_tokens_map.json", "added_tokens.json"):
        p = os.path.join(SHARED, sub, f)
        if os.path.exists(p):
            put("tokenizer_config", sub.split("/")[-1] + "_" + f, compact(json.loads(read(p))))
put("tokenizer_config", "objects.json", compact({
    "bos_token": {"content": "<s>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
    "eos_token": "</s>", "add_bos_token": True, "add_eos_token": False,
    "added_tokens_decoder": {"261": {"content": "<s>", "special": True}},
    "chat_template": [{"name": "default", "template": "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"},
                      {"name": "tool_use", "template": "{{ tools | tojson }}"}]}))
put("tokenizer_config", "generation_ids.json", compact({"bos_token_id": 261, "eos_token_id": [260, 262], "pad_token_id": None,
                                                        "temperature": 0.6, "top_p": 0.9, "do_sample": True}))

# ---- chat templates
for p in sorted(glob.glob(os.path.join(ROOT, "tests", "data", "chat_templates", "*.jinja"))):
    put("chat_template", os.path.basename(p), read(p))
p = os.path.join(SHARED, "models", "refA-phi3-26m", "chat_template.jinja")
if os.path.exists(p):
    put("chat_template", "refA.jinja", read(p))
put("chat_template", "features.jinja",
    "{% macro f(x, y=2) %}{{ x ~ y }}{% endmacro %}{% set ns = namespace(n=0) %}"
    "{% for m in messages if m.content is string %}{% set ns.n = ns.n + 1 %}{{ loop.index }}{{ f(m.role) }}"
    "{{ m.content | trim | upper | replace('A', 'b') }}{% if loop.last %}{% break %}{% endif %}{% else %}none{% endfor %}"
    "{{ tools | tojson(indent=2) }}{{ messages[1:3] | length }}{{ '%d' % 3 }}{{ range(3) | list | join(',') }}"
    "{% filter upper %}x{% endfilter %}{% with a = 1 %}{{ a }}{% endwith %}{{ strftime_now('%Y') }}"
    "{{ {'a': 1}.items() | list }}{{ 'x,y'.split(',') }}{% set b %}blk{% endset %}{{ b * 2 }}"
    "{% if n is divisibleby(3) and not flag %}{{ raise_exception('stop') if nothing is not none }}{% endif %}")

# ---- safetensors


def safetensors(tensors, metadata=None, pad=True):
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-(8 + len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


put("safetensors", "two_bf16.safetensors",
    safetensors([("a.weight", "BF16", [2, 3], bytes(range(12))), ("b", "F32", [3], struct.pack("<3f", 1, 2, 3))],
                {"format": "pt"}))
put("safetensors", "dtypes.safetensors",
    safetensors([("f16", "F16", [2], b"\x00\x3c\x00\x40"), ("i8", "I8", [4], b"\x01\x02\x03\x04"),
                 ("u8", "U8", [1, 1], b"\x05"), ("i64", "I64", [1], struct.pack("<q", -1)),
                 ("empty", "F32", [0, 4], b""), ("scalar", "F64", [], struct.pack("<d", 0.5))]))
put("safetensors", "unpadded.safetensors", safetensors([("x", "F32", [1], b"\x00\x00\x80\x3f")], pad=False))
put("safetensors", "empty.safetensors", safetensors([], {}))

# ---- server request bodies: the first byte picks the endpoint (0 chat, 1 completions)
chat = [
    {"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
    {"model": "m", "messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}], "stream": True,
     "stream_options": {"include_usage": True}, "max_tokens": 16, "temperature": 0.5, "top_p": 0.9, "top_k": 4,
     "seed": 7, "stop": ["\n", "END"], "logprobs": True, "top_logprobs": 3, "presence_penalty": 0.1,
     "frequency_penalty": 0.2, "n": 1},
    {"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 3, "stop": "s", "ignore_eos": True,
     "min_p": 0.05, "repeat_penalty": 1.1},
]
comp = [
    {"model": "m", "prompt": "Once upon", "max_tokens": 8, "echo": True, "logprobs": 2},
    {"prompt": [1, 2, 3], "stream": True, "temperature": 0},
    {"prompt": ["only one"], "stop": ["a", "b", "c", "d"]},
]
for k, b in enumerate(chat):
    put("openai_request", "chat_%d" % k, b"\x00" + compact(b).encode())
for k, b in enumerate(comp):
    put("openai_request", "completion_%d" % k, b"\x01" + compact(b).encode())
