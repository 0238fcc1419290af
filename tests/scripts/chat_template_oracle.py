#!/usr/bin/python3
"""Oracle for UPG's chat-template interpreter: renders test cases with python3-jinja2 exactly as
Hugging Face transformers does, and writes or checks tests/data/chat_templates/cases.json.

  /usr/bin/python3 tests/scripts/chat_template_oracle.py --write   # regenerate cases.json
  /usr/bin/python3 tests/scripts/chat_template_oracle.py --check   # exit 1 if jinja2 disagrees

transformers (chat_template_utils._compile_jinja_template) renders with
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]),
a tojson filter that is json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...),
and the globals raise_exception (raises TemplateError(message)) and strftime_now (here fixed to
NOW so expectations are reproducible). apply_chat_template passes messages, tools (None when
absent), documents=None, add_generation_prompt, the special tokens and extra kwargs.

Each case is either {"template": <file in tests/data/chat_templates>, "messages", "tools"?,
"add_generation_prompt", "bos_token", "eos_token", "extra"} (rendered like apply_chat_template)
or {"source": <inline template>, "context": {...}} (rendered with exactly that context).
"expected" holds the output, or null with "error" set: {"kind": "raise", "message": ...} for
raise_exception, {"kind": "error"} for any other Jinja error.
"""
import argparse
import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "data", "chat_templates"))
CASES_PATH = os.path.join(DATA, "cases.json")
NOW = datetime.datetime(2024, 9, 3, 12, 0, 0)  # what strftime_now() sees


class Raised(Exception):
    pass


def make_env():
    def raise_exception(message):
        raise Raised(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return NOW.strftime(fmt)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(case):
    env = make_env()
    try:
        if "template" in case:
            with open(os.path.join(DATA, case["template"]), encoding="utf-8", newline="") as f:
                source = f.read()
            extra = dict(case.get("extra") or {})
            tools = extra.pop("tools", None)
            documents = extra.pop("documents", None)
            out = env.from_string(source).render(
                messages=case["messages"], tools=tools, documents=documents,
                add_generation_prompt=case["add_generation_prompt"],
                bos_token=case["bos_token"], eos_token=case["eos_token"], **extra)
        else:
            out = env.from_string(case["source"]).render(**case["context"])
        return out, None
    except Raised as e:
        return None, {"kind": "raise", "message": str(e)}
    except jinja2.TemplateError:
        return None, {"kind": "error"}
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError):
        return None, {"kind": "error"}


# ------------------------------------------------------------------------------------------------
# Conversations

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
HELLO = {"role": "user", "content": "Hello!"}
HI = {"role": "assistant", "content": "Hi there! How can I help?"}
Q2 = {"role": "user", "content": "  What is 2+2?\n"}
A2 = {"role": "assistant", "content": " 4 "}
UNICODE = {"role": "user", "content": "Café ☕, naïve — 日本語 😀 \"quotes\" and 'apostrophes'\ttab\\slash"}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "description": "Current time in a time zone (IANA name, e.g. Europe/Paris)",
                 "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": []}},
}
TOOLS = [WEATHER_TOOL, TIME_TOOL]
ASK_WEATHER = {"role": "user", "content": "What's the weather like in Paris?"}
CALL_WEATHER = {"role": "assistant", "tool_calls": [
    {"id": "call12345", "type": "function",
     "function": {"name": "get_current_weather", "arguments": {"location": "Paris, France", "unit": "celsius"}}}]}
CALL_TWO = {"role": "assistant", "content": "Let me check both.", "tool_calls": [
    {"type": "function", "function": {"name": "get_current_weather", "arguments": {"location": "Paris"}}},
    {"type": "function", "function": {"name": "get_time", "arguments": {"tz": "Europe/Paris"}}}]}
TOOL_RESULT = {"role": "tool", "tool_call_id": "call12345", "name": "get_current_weather", "content": "22 degrees, sunny"}
TOOL_RESULT2 = {"role": "tool", "name": "get_time", "content": "14:05"}
TOOL_RESULT_DICT = {"role": "tool", "tool_call_id": "call12345", "content": {"temperature": 22, "sky": "sunny"}}
ANSWER = {"role": "assistant", "content": "It is 22 degrees and sunny in Paris."}

LLAMA = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
MISTRAL = {"bos_token": "<s>", "eos_token": "</s>"}
GEMMA = {"bos_token": "<bos>", "eos_token": "<eos>"}
QWEN = {"bos_token": "", "eos_token": "<|im_end|>"}
PHI4 = {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>"}


def chat(name, template, tokens, messages, gen=True, extra=None):
    case = {"name": name, "template": template, "messages": messages, "add_generation_prompt": gen}
    case.update(tokens)
    case["extra"] = extra or {}
    return case


def template_cases():
    cases = []
    basic = [
        ("system and user", [SYSTEM, HELLO], True),
        ("multi-turn", [SYSTEM, HELLO, HI, Q2, A2, UNICODE], True),
        ("multi-turn without generation prompt", [HELLO, HI, Q2, A2], False),
        ("no system", [HELLO, HI, UNICODE], True),
    ]
    for template, tokens in [("phi-4.jinja", PHI4), ("llama-3.1-instruct.jinja", LLAMA),
                             ("llama-3.2-instruct.jinja", LLAMA), ("qwen2.5-instruct.jinja", QWEN),
                             ("mistral-v0.3-instruct.jinja", MISTRAL)]:
        for name, msgs, gen in basic:
            cases.append(chat(f"{template}: {name}", template, tokens, msgs, gen))
    for template, tokens in [("mistral-v0.1-instruct.jinja", MISTRAL), ("mistral-v0.2-instruct.jinja", MISTRAL),
                             ("gemma-2-it.jinja", GEMMA)]:
        cases.append(chat(f"{template}: one user message", template, tokens, [HELLO]))
        cases.append(chat(f"{template}: multi-turn", template, tokens, [HELLO, HI, Q2, A2, UNICODE]))
        cases.append(chat(f"{template}: multi-turn without generation prompt", template, tokens,
                          [HELLO, HI, Q2, A2], False))
        cases.append(chat(f"{template}: roles must alternate", template, tokens, [HELLO, Q2]))
        cases.append(chat(f"{template}: system role", template, tokens, [SYSTEM, HELLO]))
    cases.append(chat("mistral-v0.1-instruct.jinja: tool role rejected", "mistral-v0.1-instruct.jinja",
                      MISTRAL, [HELLO, {"role": "tool", "content": "x"}]))
    cases.append(chat("mistral-v0.3-instruct.jinja: roles must alternate", "mistral-v0.3-instruct.jinja",
                      MISTRAL, [SYSTEM, HELLO, Q2]))
    cases.append(chat("mistral-v0.3-instruct.jinja: unknown role", "mistral-v0.3-instruct.jinja",
                      MISTRAL, [HELLO, HI, {"role": "critic", "content": "hmm"}]))

    # Tools.
    for template in ["llama-3.1-instruct.jinja", "llama-3.2-instruct.jinja"]:
        cases.append(chat(f"{template}: tools in first user message", template, LLAMA,
                          [SYSTEM, ASK_WEATHER], True, {"tools": TOOLS}))
        cases.append(chat(f"{template}: tools in system message", template, LLAMA,
                          [ASK_WEATHER], True, {"tools": TOOLS, "tools_in_user_message": False}))
        cases.append(chat(f"{template}: tool call and result", template, LLAMA,
                          [SYSTEM, ASK_WEATHER, CALL_WEATHER, TOOL_RESULT, ANSWER], False, {"tools": TOOLS}))
        cases.append(chat(f"{template}: dict tool result", template, LLAMA,
                          [ASK_WEATHER, CALL_WEATHER, TOOL_RESULT_DICT], True, {"tools": [WEATHER_TOOL]}))
        cases.append(chat(f"{template}: two tool calls rejected", template, LLAMA,
                          [ASK_WEATHER, CALL_TWO], True, {"tools": TOOLS}))
        cases.append(chat(f"{template}: tools but no user message", template, LLAMA,
                          [SYSTEM], True, {"tools": TOOLS}))
        cases.append(chat(f"{template}: date_string given", template, LLAMA,
                          [HELLO], True, {"date_string": "01 Jan 2025"}))
    cases.append(chat("llama-3.1-instruct.jinja: builtin tools", "llama-3.1-instruct.jinja", LLAMA,
                      [SYSTEM, ASK_WEATHER,
                       {"role": "assistant", "tool_calls": [{"type": "function", "function": {
                           "name": "brave_search", "arguments": {"query": "Paris weather"}}}]},
                       {"role": "ipython", "content": "Sunny, 22C"}], True,
                      {"builtin_tools": ["brave_search", "wolfram_alpha", "code_interpreter"]}))
    cases.append(chat("qwen2.5-instruct.jinja: tools with system", "qwen2.5-instruct.jinja", QWEN,
                      [SYSTEM, ASK_WEATHER], True, {"tools": TOOLS}))
    cases.append(chat("qwen2.5-instruct.jinja: tools without system", "qwen2.5-instruct.jinja", QWEN,
                      [ASK_WEATHER], True, {"tools": TOOLS}))
    cases.append(chat("qwen2.5-instruct.jinja: tool calls and results", "qwen2.5-instruct.jinja", QWEN,
                      [ASK_WEATHER, CALL_TWO, TOOL_RESULT, TOOL_RESULT2, ANSWER, Q2], True, {"tools": TOOLS}))
    cases.append(chat("qwen2.5-instruct.jinja: later system message", "qwen2.5-instruct.jinja", QWEN,
                      [HELLO, HI, SYSTEM, Q2], True))
    cases.append(chat("mistral-v0.3-instruct.jinja: tools and tool calls", "mistral-v0.3-instruct.jinja",
                      MISTRAL, [SYSTEM, ASK_WEATHER, CALL_WEATHER, TOOL_RESULT, ANSWER, Q2], True,
                      {"tools": TOOLS}))
    cases.append(chat("mistral-v0.3-instruct.jinja: bad tool call id", "mistral-v0.3-instruct.jinja",
                      MISTRAL, [ASK_WEATHER, {"role": "assistant", "tool_calls": [
                          {"id": "short", "type": "function", "function": CALL_WEATHER["tool_calls"][0]["function"]}]}],
                      True, {"tools": TOOLS}))
    return cases


def feature(name, source, context=None):
    return {"name": name, "source": source, "context": context or {}}


CONV = [HELLO, HI, Q2]


def feature_cases():
    F = feature
    return [
        # Text, whitespace control (trim_blocks, lstrip_blocks, - and +).
        F("text", "plain text"),
        F("trailing newline dropped", "a\n"),
        F("two trailing newlines", "a\n\n"),
        F("crlf normalized", "a\r\nb\rc{{ 'x\r\ny' }}"),
        F("comment", "a{# gone #}b"),
        F("comment trims newline", "a\n{# c #}\nb\n  {# c #}\nd"),
        F("trim_blocks", "{% if true %}\nx\n{% endif %}\ny"),
        F("lstrip_blocks", "a\n    {% if true %}\n    b\n    {% endif %}\nc"),
        F("lstrip not for output", "a\n    {{ 'b' }}\n"),
        F("minus trims", "a   {{- 'b' -}}   c  {%- if true -%}  d  {%- endif %}"),
        F("plus keeps", "a\n  {%+ if true +%}\nb{% endif %}"),
        F("minus comment", "a  \n{#- c -#}\n  b"),
        F("tab and form feed", "x\t {% if true %}\ty{% endif %}"),
        F("raw block", "{% raw %}{{ not evaluated }}{% endraw %}!"),
        F("strings with escapes", "{{ 'a\\nb\\t\\\"c\\\"\\x41\\u00e9\\\\' }}|{{ \"it's\" }}|{{ 'x' 'y' }}"),
        # Output of values as Python prints them.
        F("none and bools", "{{ none }} {{ true }} {{ false }} {{ None }} {{ True }}"),
        F("numbers", "{{ 1 + 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 * 3 - 1 }} {{ 1.5 + 1 }} {{ 1 / 4 }} {{ 2 ** 10 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.0 }} {{ 3 / 1 }} {{ 1e-5 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }}"),
        F("containers", "{{ [1, 'a', none, true, 2.5] }} {{ {'k': 'v', 'n': [1]} }} {{ ['it\\'s', \"q\\\"\"] }} {{ [] }} {{ {} }}"),
        F("undefined prints nothing", "[{{ missing }}][{{ x.missing }}][{{ x['nope'] }}]", {"x": {"a": 1}}),
        F("concat operator", "{{ 'n=' ~ 3 ~ true ~ none ~ missing ~ [1] }}"),
        # Statements.
        F("if elif else", "{% for n in [1, 2, 3] %}{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %},{% endfor %}"),
        F("for loop variables", "{% for x in items %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }};{% endfor %}", {"items": ["a", "b", "c"]}),
        F("previtem nextitem", "{% for x in [1, 2, 3] %}({{ loop.previtem }}|{{ loop.nextitem }}){% endfor %}"),
        F("loop cycle", "{% for x in range(5) %}{{ loop.cycle('a', 'b') }}{% endfor %}"),
        F("for else", "{% for x in [] %}x{% else %}empty{% endfor %}{% for x in missing %}x{% else %}none{% endfor %}"),
        F("for with a condition", "{% for x in [1, 2, 3, 4, 5] if x % 2 == 1 %}{{ loop.index }}/{{ loop.length }}:{{ x }}{% if not loop.last %},{% endif %}{% endfor %}"),
        F("for over dict and items", "{% for k in d %}{{ k }}{% endfor %};{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in d | items %}{{ k }}{{ v }}{% endfor %}", {"d": {"z": 1, "a": 2, "m": 3}}),
        F("for over string", "{% for c in 'héllo' %}[{{ c }}]{% endfor %}"),
        F("break continue", "{% for n in [1, 2, 3, 4, 5] %}{% if n == 2 %}{% continue %}{% endif %}{% if n == 4 %}{% break %}{% endif %}{{ n }}{% endfor %}"),
        F("nested loops", "{% for a in [1, 2] %}{% for b in 'xy' %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ loop.index }}|{% endfor %}"),
        F("set and scope", "{% set a = 1 %}{% for x in [1, 2] %}{{ a }}{% set a = a + 10 %}{{ a }} {% endfor %}{{ a }}{% if true %}{% set b = 3 %}{% endif %}{{ b }}"),
        F("set in loop does not carry over", "{% for x in [1, 2] %}{% if loop.first %}{% set y = 'set' %}{% endif %}[{{ y }}]{% endfor %}"),
        F("set tuple", "{% set a, b = [1, 2] %}{{ b }}{{ a }}{% set c = 1, 2 %}{{ c | length }}"),
        F("block set", "{% set x %}  inner {{ 1 + 1 }}\n{% endset %}[{{ x }}]{% set y | upper %}up{% endset %}{{ y }}"),
        F("namespace", "{% set ns = namespace(total=0, seen=false) %}{% for x in [1, 2, 3] %}{% set ns.total = ns.total + x %}{% if x == 2 %}{% set ns.seen = true %}{% endif %}{% endfor %}{{ ns.total }} {{ ns.seen }}"),
        F("namespace attribute added", "{% set ns = namespace() %}{% set ns.a = 'x' %}{{ ns.a }}{{ ns.b }}"),
        F("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', '?') }} {{ greet(punct='.', name='Cy') }}"),
        F("recursive macro", "{% macro count(n) %}{{ n }}{% if n > 0 %},{{ count(n - 1) }}{% endif %}{% endmacro %}{{ count(5) }}"),
        F("filter block", "{% filter upper %}hello {{ 'world' }}{% endfilter %}"),
        F("with block", "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]"),
        # Expressions.
        F("comparisons", "{{ 1 < 2 }}{{ 2 <= 1 }}{{ 'a' == 'a' }}{{ 'a' != 'a' }}{{ 3 > 2 }}{{ 1 >= 1 }}{{ 1 == 1.0 }}{{ 1 == true }}{{ 'b' > 'a' }}{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}{{ [1, 2] < [1, 3] }}"),
        F("logic returns operands", "{{ true and false }}{{ true or false }}{{ not true }}{{ not (1 == 2) }}|{{ 'a' or 'b' }}|{{ '' or 'b' }}|{{ 0 and 'x' }}|{{ 1 and 'x' }}|{{ missing or 'dflt' }}"),
        F("in and not in", "{{ 'b' in 'abc' }}{{ 2 in [1, 2] }}{{ 'k' in d }}{{ 'q' not in d }}{{ 'x' in missing }}", {"d": {"k": 1}}),
        F("tests", "{{ x is defined }}{{ y is defined }}{{ y is not defined }}{{ n is none }}{{ s is string }}{{ d is mapping }}{{ s is iterable }}{{ l is sequence }}{{ 1 is number }}{{ 1.5 is float }}{{ 1 is integer }}{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 'a' is equalto 'a' }}{{ 'a' is eq('b') }}{{ y is undefined }}{{ d is iterable }}{{ true is boolean }}{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ range is callable }}", {"x": 1, "n": None, "s": "s", "d": {}, "l": [1]}),
        F("conditional expression", "{{ 'yes' if flag else 'no' }}[{{ 'a' if false }}]{{ 1 if false else 2 if true else 3 }}", {"flag": True}),
        F("subscripts", "{{ xs[0] }}{{ xs[-1] }}{{ 'hello'[1] }}{{ d['k'] }}{{ d.k }}{{ xs.1 }}[{{ xs[10] }}]", {"xs": [1, 2, 3], "d": {"k": "v"}}),
        F("slices", "{{ xs[1:] }}{{ xs[:2] }}{{ xs[::-1] }}{{ xs[::2] }}{{ xs[1::2] }}{{ xs[-1:0:-1] }}{{ xs[:-2:-1] }}{{ 'abc'[::-1] }}{{ 'héllo wörld'[1:8] }}{{ 'x'[5:] }}", {"xs": [1, 2, 3, 4, 5]}),
        F("list and dict literals", "{{ [1, 'a'][1] }}{{ {'k': 1}['k'] }}{{ ({'a': 1, 'a': 2}) }}{{ (1, 2) | list }}{{ [1, 2] + [3] }}{{ 'ab' * 3 }}"),
        F("filter binds tighter than plus", "{{ 'a' + ' b ' | trim + 'c' }}{{ -3 | abs }}{{ (-3) | abs }}"),
        # Filters.
        F("string filters", "{{ '  x  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'Ab' | upper }}{{ 'Ab' | lower }}|{{ 'hello wORLD' | capitalize }}|{{ 'hello-world (foo) bar' | title }}|{{ 'aXbXc' | replace('X', '-') }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 5 | string }}{{ none | string }}|{{ 'é' | upper }}|{{ 'abc' | reverse }}"),
        F("list filters", "{{ xs | length }}|{{ xs | join('-') }}|{{ xs | join }}|{{ xs | first }}{{ xs | last }}|{{ 'abc' | first }}|{{ xs | list }}|{{ 'ab' | list }}|{{ xs | reverse | list }}|{{ xs | sum }}|{{ xs | max }}{{ xs | min }}|{{ [3, 1, 2] | sort }}|{{ ['b', 'A', 'c'] | sort }}|{{ [3, 1, 2] | sort(reverse=true) }}|{{ [1, 2, 1, 3] | unique | list }}|{{ [] | first }}", {"xs": [1, 2, 3]}),
        F("default filter", "{{ missing | default('d') }}|{{ none | default('d') }}|{{ '' | default('d', true) }}|{{ x | d('no') }}|{{ missing | default }}", {"x": 0}),
        F("number filters", "{{ '42' | int }}{{ '4.7' | int }}{{ 'x' | int }}{{ 'x' | int(7) }}{{ 3.9 | int }}|{{ '1.5' | float }}{{ 3 | float }}|{{ 2.5 | round }}{{ 3.5 | round }}{{ 2.675 | round(2) }}{{ 2.1 | round(method='ceil') }}{{ 3 | round }}|{{ -2 | abs }}"),
        F("tojson", "{{ {'a': [1, 'x', none, true, 1.5], 'b': {'c': 'é\"\\n'}} | tojson }}|{{ 'plain' | tojson }}|{{ [] | tojson }}"),
        F("tojson indented", "{{ {'b': [1, {'c': 'x'}], 'a': {}, 'e': []} | tojson(indent=4) }}|{{ {'b': 1, 'a': 2} | tojson(indent=2, sort_keys=true) }}|{{ [1, 2] | tojson(separators=[',', ':']) }}|{{ 'é' | tojson(ensure_ascii=true) }}"),
        F("tojson keeps key order", "{{ tool | tojson }}", {"tool": WEATHER_TOOL}),
        F("selectattr map", "{{ msgs | selectattr('role', 'equalto', 'user') | list | length }}|{{ (msgs | selectattr('role', 'equalto', 'user') | list)[-1].content }}|{{ msgs | rejectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }}|{{ msgs | map(attribute='role') | list }}|{{ msgs | map(attribute='missing', default='-') | join }}", {"msgs": CONV}),
        F("select reject", "{{ [1, 0, 2, none, 3] | select | list }}{{ [1, 2, 3, 4] | select('odd') | list }}{{ ['a', 'b', 'code'] | reject('equalto', 'code') | list }}{{ ['a', 1] | select('string') | list }}{{ ['A', 'b'] | map('lower') | join }}"),
        F("selectattr truthy", "{% for i in items | selectattr('on') %}{{ i.n }}{% endfor %}", {"items": [{"n": 1, "on": True}, {"n": 2, "on": False}, {"n": 3}]}),
        F("dict filters", "{{ d | items | list }}{{ d | dictsort }}{{ d | length }}{{ d | list }}", {"d": {"b": 2, "a": 1}}),
        F("indent", "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(width='> ', blank=true) }}"),
        F("undefined through filters", "[{{ missing | trim }}][{{ missing | length }}][{{ missing | join(',') }}][{{ missing | list }}][{{ missing | upper }}]"),
        # Methods.
        F("string methods", "{{ ' x '.strip() }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('x') }}{{ 'abc'.startswith(('x', 'a')) }}|{{ 'ab'.upper() }}{{ 'AB'.lower() }}|{{ 'hello world'.title() }}|{{ \"they're 1st\".title() }}|{{ ' x '.lstrip() }}|{{ ' x '.rstrip() }}|{{ 'hello'.capitalize() }}|{{ 'a-b-c'.replace('-', '+', 1) }}|{{ 'abcb'.find('b') }}{{ 'abcb'.rfind('b') }}{{ 'abc'.find('z') }}|{{ 'a,b'.count(',') }}|{{ ', '.join(['x', 'y']) }}|{{ '12'.isdigit() }}"),
        F("strip characters", "[{{ '\\n\\nx\\n'.strip('\\n') }}][{{ 'xxay'.lstrip('x') }}][{{ 'ayyx'.rstrip('xy') }}][{{ ' a '.strip(none) }}][{{ '\\u00a0\\u3000x\\u2003'.strip() }}]"),
        F("split", "{{ 'a<b>c<b>'.split('<b>') }}{{ ' a  b '.split() }}{{ 'x'.split(',') }}{{ 'r</think>a'.split('</think>')[-1] }}{{ 'a b c'.split(' ', 1) }}{{ 'a b c'.rsplit(' ', 1) }}{{ '  a b  c '.split(none, 1) }}"),
        F("dict methods", "{{ d.get('k') }}{{ d.get('q', 'dflt') }}{{ d.get('q') }}{{ d.keys() | list }}{{ d.values() | list }}{{ d.items() | list }}", {"d": {"k": "v", "n": 1}}),
        F("reasoning split", "{% set content = m.content %}{% if '</think>' in content %}{% set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}{% set content = content.split('</think>')[-1].lstrip('\\n') %}{% endif %}[{{ reasoning }}][{{ content }}]", {"m": {"content": "<think>\nstep 1\n</think>\n\nAnswer"}}),
        # Globals.
        F("range", "{% for i in range(3) %}{{ i }}{% endfor %}{{ range(1, 8, 3) | list }}{{ range(3, -1, -1) | list }}{{ range(0, 3, -1) | list }}"),
        F("dict global", "{{ dict(a=1, b='x') }}{{ namespace(a=1).a }}"),
        F("strftime_now", "{{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d %H:%M') }}"),
        F("raise_exception", "a{{ raise_exception('Stop: ' ~ 42) }}b"),
        F("raise in a branch not taken", "{% if false %}{{ raise_exception('no') }}{% endif %}ok"),
        # Errors.
        F("attribute of undefined is an error", "{{ missing.attr }}"),
        F("item of undefined is an error", "{{ missing[0] }}"),
        F("adding str and int is an error", "{{ 'a' + 1 }}"),
        F("arithmetic on undefined is an error", "{{ missing + 1 }}"),
        F("division by zero is an error", "{{ 1 / 0 }}"),
        F("unknown filter is an error", "{{ 'x' | no_such_filter }}"),
        F("unknown test is an error", "{{ 'x' is no_such_test }}"),
        F("calling a non-callable is an error", "{{ 'x'() }}"),
        F("items of a non-mapping is an error", "{{ [1] | items | list }}"),
        F("tojson of undefined is an error", "{{ missing | tojson }}"),
        F("unpack mismatch is an error", "{% for a, b in [[1, 2, 3]] %}{% endfor %}"),
        F("set attribute on non-namespace is an error", "{% set d = {'a': 1} %}{% set d.a = 2 %}"),
        F("range too big is an error", "{{ range(200000) | length }}"),
    ]


def build_cases():
    cases = template_cases() + feature_cases()
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    for c in cases:
        out, err = render(c)
        c["expected"] = out
        c["error"] = err
    return {
        "about": "Generated by tests/scripts/chat_template_oracle.py with python3-jinja2 "
                 "(transformers' sandboxed environment); do not edit by hand.",
        "jinja2_version": jinja2.__version__,
        "strftime_now": NOW.strftime("%Y-%m-%dT%H:%M:%S"),
        "cases": cases,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate cases.json")
    mode.add_argument("--check", action="store_true", help="fail unless cases.json matches jinja2")
    args = ap.parse_args()
    fresh = build_cases()
    if args.write:
        with open(CASES_PATH, "w", encoding="utf-8", newline="\n") as f:
            json.dump(fresh, f, ensure_ascii=False, indent=1)
            f.write("\n")
        n_err = sum(1 for c in fresh["cases"] if c["error"])
        print(f"wrote {len(fresh['cases'])} cases ({n_err} expecting errors) to {CASES_PATH}")
        return 0
    with open(CASES_PATH, encoding="utf-8") as f:
        committed = json.load(f)
    bad = 0
    old = {c["name"]: c for c in committed["cases"]}
    for c in fresh["cases"]:
        o = old.pop(c["name"], None)
        if o is None:
            print(f"MISSING from cases.json: {c['name']}")
            bad += 1
        elif o != c:
            print(f"DIFFERS: {c['name']}\n  committed: {json.dumps(o, ensure_ascii=False)[:400]}\n"
                  f"  jinja2:    {json.dumps(c, ensure_ascii=False)[:400]}")
            bad += 1
    for name in old:
        print(f"STALE in cases.json (no longer generated): {name}")
        bad += 1
    if bad:
        print(f"FAIL: {bad} of {len(fresh['cases'])} cases disagree with jinja2 {jinja2.__version__}; "
              "rerun with --write after checking why")
        return 1
    print(f"OK: {len(fresh['cases'])} cases agree with jinja2 {jinja2.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
