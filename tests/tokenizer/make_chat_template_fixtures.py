#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/chat_templates.json: real chat templates, fixed conversations, and what
HF transformers renders for every (template, conversation) pair (or the error it raises), plus small
templates that exercise single Jinja constructs, and HF's apply_chat_template ids for two tokenizer folders.

The C++ test (tests/tokenizer/test_chat_template.cpp) renders the same pairs with dots1's interpreter and
asserts identical strings (or a TemplateError, with HF's message when the template raised it itself).

Rendering goes through transformers' own function, render_jinja_template (what apply_chat_template calls),
with the special tokens of each template's model family passed as apply_chat_template passes them
(tokenizer.special_tokens_map: bos_token, eos_token, unk_token, pad_token, ... as strings; tools=None,
documents=None). strftime_now's clock is fixed (STRFTIME_NOW_TIMESTAMP, read in local time, as HF does;
the C++ test uses the same instant with TZ=UTC, and so should this script: it sets TZ=UTC).

Template sources (recorded per template in the fixture: repository, path, commit, entry):
  --llama-cpp DIR   a git clone of llama.cpp (or a fork with the same files): models/templates/*.jinja,
                    the templates of HF checkpoints that llama.cpp tests with
  --hf-js DIR       a git clone of huggingface/huggingface.js: packages/ollama-utils/src/chat-template-automap.ts,
                    the chat templates of ~100 popular GGUF models (the HF chat_template they embed)
Without them the script re-renders the templates already stored in the fixture (after a transformers
update, say). Needs: pip install transformers jinja2. Run: HF_HUB_OFFLINE=1 python3 make_chat_template_fixtures.py
"""
import argparse
import datetime as _dt
import json
import os
import re
import subprocess
import sys
import time

os.environ["TZ"] = "UTC"
time.tzset()

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "chat_templates.json")
STRFTIME_NOW_TIMESTAMP = 1721995200  # 2024-07-26 12:00:00 UTC

import transformers  # noqa: E402
import transformers.utils.chat_template_utils as ctu  # noqa: E402
from transformers.utils.chat_template_utils import render_jinja_template  # noqa: E402
import jinja2  # noqa: E402


class _FixedClock(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return _dt.datetime.fromtimestamp(STRFTIME_NOW_TIMESTAMP, tz)


ctu.datetime = _FixedClock  # strftime_now() reads ctu.datetime.now()

# ---------------------------------------------------------------------------------------------------
# Conversations: with and without system, multi-turn, empty contents, non-ASCII, whitespace, role-order
# violations, reasoning, markers in user text; add_generation_prompt on and off.

CONVERSATIONS = [
    ("user", [("user", "Hello!")], True, {}),
    ("system_user", [("system", "You are a concise assistant."), ("user", "What is the capital of France?")], True, {}),
    ("multi_turn", [("system", "Answer in one word."), ("user", "Sky colour?"), ("assistant", "Blue."), ("user", "Grass?")], True, {}),
    ("closed_turns_no_system", [("user", "u1"), ("assistant", "a1"), ("user", "u2"), ("assistant", "a2")], False, {}),
    ("empty_contents", [("system", ""), ("user", "")], True, {}),
    ("empty_assistant", [("user", "Say nothing."), ("assistant", "")], False, {}),
    ("non_ascii", [("user", "Grüße aus München! Ärger über Öl? 你好，世界 🌍🚀"), ("assistant", "Ça va? Ñandú — 日本語 😀"),
                   ("user", "Ünïcödé: ß, ﬁ, İ, Σ; emoji 👩‍👩‍👧 and 🇩🇪")], True, {}),
    ("whitespace", [("user", "  padded text \n\n"), ("assistant", "\n answer \t")], False, {}),
    ("assistant_first", [("assistant", "I speak first."), ("user", "ok")], True, {}),
    ("two_users", [("user", "first"), ("user", "second")], True, {}),
    ("system_only", [("system", "Only a system message.")], True, {}),
    ("reasoning", [("user", "2+2?"), ("assistant", "<think>\nadd them\n</think>\n\n4"), ("user", "and 3+3?")], True, {}),
    ("thinking_disabled", [("user", "Quick: 1+1?")], True, {"enable_thinking": False}),
    ("markers_in_content", [("user", "{{ not a tag }} {% if x %} <|im_end|> [INST] </s> <|eot_id|> <|endofuserprompt|>")], True, {}),
    ("multiline", [("system", "Rules:\n1. be kind\n2. be brief\n"), ("user", "line one\r\nline two\n\tindented")], True, {}),
    # tool use (the interpreter's test only: ChatFormat passes role and content and no tools)
    ("tools", [("system", "You help with weather."), ("user", "Weather in Köln?")], True, {"tools": None}),
    ("tool_calls", [("user", "Weather in Köln?"),
                    {"role": "assistant", "content": "", "tool_calls": [
                        {"type": "function", "id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Köln", "days": 3}}}]},
                    {"role": "tool", "content": "{\"temp\": 21.5}", "name": "get_weather", "tool_call_id": "call_1"},
                    ("assistant", "It is 21.5 °C."), ("user", "Thanks")], True, {"tools": None}),
]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city, in °C.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                    "days": {"type": "integer", "enum": [1, 3, 7]}}, "required": ["city"]}}}]
CONVERSATIONS = [(n, turns, g, {k: (TOOLS if k == "tools" else v) for k, v in kw.items()}) for n, turns, g, kw in CONVERSATIONS]


def message(turn):
    return turn if isinstance(turn, dict) else {"role": turn[0], "content": turn[1]}

# ---------------------------------------------------------------------------------------------------
# Special tokens apply_chat_template passes (special_tokens_map), per model family: representative values
# from the families' tokenizer_config.json files.

LLAMA3 = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
LLAMA2 = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
QWEN = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
DEEPSEEK = {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}
GEMMA = {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>"}
COHERE = {"bos_token": "<BOS_TOKEN>", "eos_token": "<|END_OF_TURN_TOKEN|>", "pad_token": "<PAD>"}
GRANITE = {"bos_token": "<|end_of_text|>", "eos_token": "<|end_of_text|>", "pad_token": "<|end_of_text|>"}
PHI3 = {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>"}
PHI4 = {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|dummy_85|>"}
DOTS1 = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
FAMILIES = [  # first match on the lower-cased template name wins
    ("deepseek", DEEPSEEK), ("r1-1776", DEEPSEEK), ("deepcoder", DEEPSEEK), ("llama-3", LLAMA3), ("llama3", LLAMA3),
    ("hermes", LLAMA3), ("firefunction", LLAMA3), ("functionary", LLAMA3), ("nemotron:70b", LLAMA3), ("llama-guard3", LLAMA3),
    ("llama4", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot|>"}), ("qwen", QWEN), ("qwq", QWEN), ("marco-o1", QWEN),
    ("gemma", GEMMA), ("command", COHERE), ("cohere", COHERE), ("aya", COHERE), ("granite", GRANITE), ("phi4", PHI4),
    ("phi-4", PHI4), ("phi", PHI3), ("dots1", DOTS1), ("smollm", {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}),
    ("gpt-oss", {"bos_token": "<|startoftext|>", "eos_token": "<|return|>", "pad_token": "<|endoftext|>"}),
    ("seed-oss", {"bos_token": "<seed:bos>", "eos_token": "<seed:eos>", "pad_token": "<seed:pad>"}),
    ("exaone", {"bos_token": "[BOS]", "eos_token": "[|endofturn|]", "pad_token": "[PAD]"}),
    ("glm", {"eos_token": "<|user|>", "pad_token": "<|endoftext|>"}),
    ("olmo", {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}),
    ("yi", {"bos_token": "<|startoftext|>", "eos_token": "<|im_end|>", "unk_token": "<unk>"}),
]


def special_tokens_for(name):
    low = name.lower()
    for key, tokens in FAMILIES:
        if key in low:
            return dict(tokens)
    return dict(LLAMA2)


# ---------------------------------------------------------------------------------------------------
# Template sources

def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def llama_cpp_templates(repo, repo_name):
    commit = git(repo, "rev-parse", "HEAD").strip()
    out = []
    for path in git(repo, "ls-tree", "--name-only", "HEAD", "models/templates/").split():
        if not path.endswith(".jinja"):
            continue
        text = git(repo, "show", f"HEAD:{path}")
        name = "llama.cpp/" + os.path.basename(path)[: -len(".jinja")]
        out.append({"name": name, "source": {"repo": repo_name, "path": path, "commit": commit}, "template": text})
    return out


def parse_js_string(s, i):
    """The JavaScript string literal starting at s[i] (a quote); returns (value, index after it)."""
    q = s[i]
    i += 1
    out = []
    while s[i] != q:
        c = s[i]
        if c == "\\":
            n = s[i + 1]
            simple = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0", "\\": "\\", "'": "'", '"': '"', "`": "`"}
            if n in simple:
                out.append(simple[n])
                i += 2
            elif n == "u":
                if s[i + 2] == "{":
                    j = s.index("}", i)
                    out.append(chr(int(s[i + 3 : j], 16)))
                    i = j + 1
                else:
                    code = int(s[i + 2 : i + 6], 16)
                    i += 6
                    if 0xD800 <= code < 0xDC00 and s[i : i + 2] == "\\u":
                        low = int(s[i + 2 : i + 6], 16)
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    out.append(chr(code))
            elif n == "x":
                out.append(chr(int(s[i + 2 : i + 4], 16)))
                i += 4
            elif n == "\n":
                i += 2
            else:
                out.append(n)
                i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out), i + 1


def ollama_templates(repo):
    path = "packages/ollama-utils/src/chat-template-automap.ts"
    commit = git(repo, "rev-parse", "HEAD").strip()
    text = git(repo, "show", f"HEAD:{path}")
    out, seen, names = [], set(), {}
    for m in re.finditer(r'model: "([^"]+)",\s*gguf: ', text):
        template, _ = parse_js_string(text, m.end())
        if template in seen:
            continue
        seen.add(template)
        name = "ollama/" + m.group(1).replace("library/", "")
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:  # an entry with several templates (qwq:32b has three)
            name += f"#{names[name]}"
        out.append({"name": name,
                    "source": {"repo": "huggingface/huggingface.js", "path": path, "commit": commit, "entry": m.group(1)},
                    "template": template})
    return out


def own_templates():
    """dots.llm1 as other engines spell it (no public HF chat_template of dots.llm1.inst is at hand)."""
    kjv = json.load(open(os.path.join(ROOT, "examples", "models", "kjv-tiny", "tokenizer_config.json")))["chat_template"]
    swift = ("{%- if messages and messages[0]['role'] == 'system' -%}{{- '<|system|>' + messages[0]['content'] + '<|endofsystem|>' -}}"
             "{%- set loop_messages = messages[1:] -%}{%- else -%}{{- '<|system|>You are a helpful assistant.<|endofsystem|>' -}}"
             "{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}"
             "{%- if message['role'] == 'user' -%}{{- '<|userprompt|>' + message['content'] + '<|endofuserprompt|>' -}}"
             "{%- elif message['role'] == 'assistant' -%}{{- '<|response|>' + message['content'] + '<|endofresponse|>' -}}"
             "{%- else -%}{{- raise_exception('dots1 has no role ' + message['role']) -}}{%- endif -%}{%- endfor -%}"
             "{%- if add_generation_prompt -%}{{- '<|response|>' -}}{%- endif -%}")
    return [
        {"name": "dots1/kjv-tiny", "source": {"repo": "dots1", "path": "examples/models/kjv-tiny/tokenizer_config.json",
                                             "note": "llama.cpp's LLM_CHAT_TEMPLATE_DOTS1 rendering, as a Jinja template"}, "template": kjv},
        {"name": "dots1/ms-swift", "source": {"repo": "modelscope/ms-swift", "path": "swift/llm/template/template/*.py",
                                             "note": "register_template(dots1) (default system 'You are a helpful assistant.') written as Jinja"},
         "template": swift},
    ]


# ---------------------------------------------------------------------------------------------------
# Small templates, one Jinja construct each (the interpreter's unit fixture)

UNIT = [
    # whitespace control, trim_blocks, lstrip_blocks, comments, raw
    ("  {% if true %}\n  x\n  {% endif %}\n  y\n", {}),
    ("a\n{# c #}\nb\n  {#- c -#}  \nc", {}),
    ("x{%- if true %}  y  {% endif -%}  z", {}),
    ("a  {{- ' b ' -}}  c", {}),
    ("{%+ if true %}  kept{% endif +%}\nnext", {}),
    ("  {%+ if true %}x{% endif %}", {}),
    ("line\n    {% for i in [1, 2] %}\n    {{ i }}\n    {% endfor %}\nend", {}),
    ("{% raw %}{{ not evaluated }}{% endraw %}", {}),
    ("a\r\nb\rc\n", {}),
    ("trailing newline kept once\n\n", {}),
    ("{{ {'a': {'b': 1}}['a'] }}", {}),
    # literals and printing
    ("{{ 1.0 }} {{ 1e20 }} {{ 1.5e-5 }} {{ 0.1 + 0.2 }} {{ [1, 'a', none, true, 1.5] }} {{ {'a': 1, 'b': 'x'} }} {{ (1,) }} {{ ('a', 2) }}", {}),
    ("{{ 'it\\'s' }} {{ [\"it's\", 'a\"b', 'x\\ny', 'é\\t'] }}", {}),
    ("{{ 0.1 }} {{ 100.0 }} {{ 1e16 }} {{ 1e15 }} {{ 1.23e-4 }} {{ 0.0001 }} {{ -0.0 }} {{ 3.0e0 }} {{ 1_000 }} {{ 0x1F }} {{ 0o17 }} {{ 0b101 }}", {}),
    ("{{ 'a' 'b' }} {{ \"\\u00e9\\x41\\101\\N\" }} {{ 'tab\\there' }}", {}),
    ("{{ none }} {{ true }} {{ False }} {{ None }}", {}),
    # operators
    ("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }}", {}),
    ("{{ -2 ** 2 }} {{ 2 ** 3 ** 2 }} {{ 2 * 3 + 4 }} {{ 10 - 2 - 3 }} {{ 'a' ~ 1 ~ none ~ true ~ 1.5 }} {{ 1 + 2 ~ 3 }}", {}),
    ("{{ true == 1 }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ none == none }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }}", {}),
    ("{{ 'x' * 3 }} {{ [1] * 3 }} {{ [1] + [2] }} {{ 'a' + 'b' }} {{ 3 * 'ab' }}", {}),
    ("{{ 1 if 0 else 2 }} {{ 0 or 'x' }} {{ 1 and 'y' }} {{ none or none }} {{ not none }} {{ 'a' if false }}|", {}),
    ("{{ 'x' in d }} {{ 'a' in d }} {{ 1 in [1, 2] }} {{ 'b' in 'abc' }} {{ 'z' not in 'abc' }} {{ 'a' in u }}", {"d": {"a": 1}}),
    ("{{ 'abc'[::-1] }} {{ [1, 2, 3][-1] }} {{ [1, 2, 3][5] }}|{{ 'hello'[1:3] }} {{ [1, 2, 3][1:] }} {{ [1, 2, 3][:-1] }} {{ [1, 2, 3, 4][::2] }} {{ 'abcdef'[-3:] }} {{ [1, 2, 3][5:] }} {{ 'héllo'[1] }} {{ 'héllo'[::-1] }} {{ 'héllo'[-2:] }}", {}),
    ("{{ (1, 2)[0] }} {{ [1, 2].0 }} {{ 'ab'.1 }}", {}),
    # attribute/item access and undefined
    ("{{ m.content }}{{ m['role'] }}|{{ m.missing }}|{{ m.missing is defined }}|{{ x.y }}|{{ none.x }}|{{ none[0] }}|{{ m.get('role') }}", {"m": {"role": "user", "content": "hi"}, "x": {"y": None}}),
    ("{{ foo }}|{{ foo ~ 'x' }}|{{ foo|length }}|{{ foo|default('d') }}|{{ foo is defined }}|{{ foo is undefined }}|{% for x in foo %}{% else %}empty{% endfor %}", {}),
    ("{{ foo.bar }}", {}),
    ("{{ foo + 'x' }}", {}),
    ("{{ foo() }}", {}),
    ("{{ loop }}", {}),
    ("{% for x in none %}a{% endfor %}", {}),
    ("{{ 1 < 'a' }}", {}),
    ("{{ 'a' + 1 }}", {}),
    ("{{ 1 // 0 }}", {}),
    ("{{ x.append(1) }}", {"x": [1]}),
    ("{{ d.update({'a': 1}) }}", {"d": {}}),
    ("{{ d.pop }}|{{ d.pop is defined }}", {"d": {}}),
    ("{{ 'a' in none }}", {}),
    # set, scoping, namespace
    ("{% for i in range(3) %}{% if i == 0 %}{% set x = 'a' %}{% endif %}[{{ x }}]{% endfor %}[{{ x }}]", {}),
    ("{% set x = 1 %}{% for i in range(2) %}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}", {}),
    ("{% if true %}{% set z = 3 %}{% endif %}{{ z }}", {}),
    ("{% set ns = namespace(a=1, items=[]) %}{% for i in range(3) %}{% set ns.a = ns.a + i %}{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.a }} {{ ns.items }} {{ ns }}", {}),
    ("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = 1, 2 %}{{ t }}", {}),
    ("{% set x %}a{{ 1 }}b{% endset %}[{{ x }}]{% set y | upper %}q{% endset %}{{ y }}", {}),
    ("{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}{{ a }}", {}),
    ("{% set n = namespace() %}{% set n._x = 1 %}", {}),
    ("{% set s = 'x' %}{% set s.attr = 1 %}", {}),
    # loops
    ("{% for x in [1, 2, 3] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}", {}),
    ("{% for x in [1, 2, 3, 4] if x is even %}{{ loop.index }}/{{ loop.length }}:{{ x }} {% endfor %}", {}),
    ("{% for x in [1, 2, 3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% if x == 3 %}{% break %}{% endif %}{% endfor %}", {}),
    ("{% for x in [1, 2, 3] %}{{ loop.cycle('a', 'b') }}{{ loop.changed(x // 2) }}{{ loop.depth }}{% endfor %}", {}),
    ("{% for a, b in [[1, 2], [3, 4]] %}{{ a }}{{ b }}{% endfor %}{% for k, v in {'x': 1}.items() %}{{ k }}={{ v }}{% endfor %}{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}", {}),
    ("{% for c in 'héllo' %}{{ c }}.{% endfor %} {{ 'héllo'|length }}", {}),
    ("{% for x in [] %}x{% else %}none{% endfor %}{% for x in [1] %}{% for y in [2, 3] %}{{ loop.index }}{% endfor %}{{ loop.index }}{% endfor %}", {}),
    ("{% for a, b in [[1, 2, 3]] %}{% endfor %}", {}),
    ("{% for a in 5 %}{% endfor %}", {}),
    # macros and call
    ("{% macro f(a, b='B') %}{{ a }}{{ b }}{% endmacro %}{{ f(1) }}{{ f(1, b=2) }}{{ f('x', 'y') }}{{ f() }}", {}),
    ("{% set x = 1 %}{% macro m() %}{{ x }}{% endmacro %}{% set x = 2 %}{{ m() }}", {}),
    ("{% macro m() %}{{ y }}{% endmacro %}{% for y in [5] %}{{ m() }}{% endfor %}", {}),
    ("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}", {}),
    ("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(b=1) }}", {}),
    ("{% macro m(a) %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, b=3) }}", {}),
    ("{% macro m() %}[{{ caller() }}]{% endmacro %}{% call m() %}body{% endcall %}", {}),
    ("{% macro m(n) %}{{ caller(n * 2) }}{% endmacro %}{% call(v) m(4) %}got {{ v }}{% endcall %}", {}),
    ("{% macro m(x) %}{% if x > 0 %}{{ x }}{{ m(x - 1) }}{% endif %}{% endmacro %}{{ m(3) }}", {}),
    ("{% macro render(v) %}{% if v is mapping %}{{ '{' }}{% for k, x in v.items() %}{{ k }}:{{ render(x) }}{% endfor %}{{ '}' }}{% else %}{{ v }}{% endif %}{% endmacro %}{{ render({'a': {'b': 1}, 'c': 2}) }}", {}),
    ("{% filter upper %}shout {{ 'it' }}{% endfilter %}", {}),
    ("{% generation %}tracked{% endgeneration %}", {}),
    # tests
    ("{{ 'a' is string }}{{ 1 is string }}{{ {} is mapping }}{{ [] is mapping }}{{ [] is iterable }}{{ 'a' is iterable }}{{ 1 is iterable }}{{ none is none }}{{ 5 is divisibleby 5 }}{{ 3 is odd }}{{ 2 is even }}{{ true is boolean }}{{ 1 is boolean }}{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 1.0 is float }}{{ 1 is float }}{{ 1 is integer }}{{ true is integer }}{{ true is number }}{{ {} is sequence }}{{ x is sequence }}{{ x is iterable }}", {}),
    ("{{ 'a' is eq 'a' }}{{ 1 is ne 2 }}{{ 1 is lt 2 }}{{ 1 is gt 2 }}{{ 1 is ge 1 }}{{ 1 is le 0 }}{{ 1 is in [1] }}{{ 'x' is lower }}{{ 'X' is upper }}{{ f is callable }}{{ range is callable }}{{ 'a' is equalto 'a' }}{{ 2 is greaterthan 1 }}{{ 1 is lessthan 2 }}{{ 'upper' is filter }}{{ 'odd' is test }}", {}),
    ("{% set a = [1, 2] %}{% set b = a %}{{ a is sameas b }}{{ a is sameas [1, 2] }}{{ none is sameas none }}", {}),
    ("{{ x is not none and x is not string }}{{ not x is defined }}", {"x": 3}),
    # filters
    ("{{ '  a  '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ '\\u3000a\\u00a0'|trim }}|{{ 3|trim }}", {}),
    ("{{ [1, 2]|tojson }} {{ {'a': 'é', 'b': [1, 2.0, none, true]}|tojson }} {{ {'a': 1}|tojson(indent=2) }} {{ {'b': 1, 'a': [1, {}]}|tojson(indent=4, sort_keys=true) }} {{ 'x'|tojson(true) }} {{ 'é😀'|tojson(ensure_ascii=true) }} {{ {'a': 1}|tojson(separators=(',', ':')) }}", {}),
    ("{{ 'tab\\there'|tojson }} {{ '\\u0001'|tojson }} {{ 'a\"b\\\\c'|tojson }} {{ 1.0|tojson }} {{ 1e100|tojson }} {{ {1: 'a', true: 'b', none: 'c'}|tojson }} {{ [1, [2, {}], []]|tojson(indent=2) }}", {}),
    ("{{ foo|tojson }}", {}),
    ("{{ x|default('d') }} {{ ''|default('d') }} {{ ''|default('d', true) }} {{ none|default('d') }} {{ x|d('e') }} {{ 0|d(1, boolean=true) }}", {}),
    ("{{ 'hello world'|upper }} {{ 'HeLLo'|lower }} {{ 'hello there-you(x)'|title }} {{ 'hELLO wORLD'|capitalize }} {{ 'ß straße'|upper }}", {}),
    ("{{ 'a-b-c'|replace('-', '+') }} {{ 'a-b-c'|replace('-', '+', 1) }} {{ 'abc'|replace('', '.') }}", {}),
    ("{{ [1, 2, 3]|join(', ') }} {{ [{'n': 'a'}, {'n': 'b'}]|join('|', attribute='n') }} {{ 'abc'|join('-') }}", {}),
    ("{{ {'b': 1, 'a': 2}|items|list }} {{ {'b': 1, 'a': 2}|dictsort }} {{ {'b': 1, 'a': 2}|dictsort(by='value', reverse=true) }}", {}),
    ("{{ m|selectattr('role', 'equalto', 'user')|list|length }} {{ m|map(attribute='role')|join(',') }} {{ m|rejectattr('role', 'eq', 'user')|map(attribute='content')|list }} {{ m|selectattr('content')|list|length }}", {"m": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}]}),
    ("{{ [1, 2, 3]|map('string')|join('-') }} {{ ['a', 'B']|map('upper')|list }} {{ [1, 2, 3]|select('odd')|list }} {{ [1, 0, 2]|select|list }} {{ [1, 2, 3]|reject('even')|list }} {{ [1, 5, 2]|select('gt', 1)|list }}", {}),
    ("{{ [{'a': {'b': 1}}, {'a': {'b': 2}}]|map(attribute='a.b')|list }} {{ [{'a': 1}, {}]|map(attribute='a', default=9)|list }} {{ [[1, 2], [3, 4]]|map(attribute='1')|list }}", {}),
    ("{{ ['b', 'A', 'c']|sort }} {{ ['b', 'A', 'c']|sort(case_sensitive=true) }} {{ [{'n': 2}, {'n': 1}]|sort(attribute='n') }} {{ [3, 1]|sort(reverse=true) }} {{ [{'a': 1, 'b': 2}, {'a': 1, 'b': 1}]|sort(attribute='a,b') }}", {}),
    ("{{ [1, 2, 2, 3, 1]|unique|list }} {{ ['a', 'A', 'b']|unique|list }} {{ [1, 2, 3]|reverse|list }} {{ 'abc'|reverse }} {{ [1, 2, 3]|first }} {{ [1, 2, 3]|last }} {{ 'abc'|list }} {{ []|first }}|{{ {'x': 1, 'y': 2}|last }}", {}),
    ("{{ [1, 2]|sum }} {{ [{'a': 2}, {'a': 3}]|sum(attribute='a') }} {{ [1, 2]|sum(start=10) }} {{ [3, 1, 2]|max }} {{ [3, 1, 2]|min }} {{ ['b', 'A']|max }} {{ ['b', 'A']|min(case_sensitive=true) }} {{ [{'n': 1}, {'n': 3}]|max(attribute='n') }}", {}),
    ("{{ 1.5|int }} {{ -1.5|int }} {{ '3.7'|int }} {{ '0x1A'|int }} {{ '0x1A'|int(base=16) }} {{ true|int }} {{ '  12 '|int }} {{ 'x'|int(7) }} {{ 'x'|float }} {{ '1e3'|float }} {{ 2|float }} {{ '1_000'|int }}", {}),
    ("{{ 2.675|round(2) }} {{ 0.5|round }} {{ 1.5|round }} {{ 2.4|round(method='ceil') }} {{ 2.6|round(method='floor') }} {{ 3|round }} {{ -3|abs }} {{ -2.5|abs }} {{ 1234|round(-2) }}", {}),
    ("{{ 42|string|length }} {{ 3.0|string }} {{ none|string }} {{ [1]|string }} {{ 'ab'|count }} {{ {'a': 1}|length }} {{ 'x'|safe }}", {}),
    ("{{ 'a\\nb'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(2, first=true, blank=true) }}|{{ 'a\\nb'|indent('> ') }}|{{ 'x\\n'|indent }}", {}),
    # generators (map, select, unique, items, reverse ... return one-pass iterators) and Markup (|safe, |e)
    ("{% set g = [1, 2, 3]|select('odd') %}{{ g|list }}{{ g|list }}{% if []|select %}T{% endif %}{{ [1]|map('string') is sequence }}", {}),
    ("{% set g = [1, 2, 3]|select %}{{ g|first }}{{ g|list }}{% set h = [1, 2, 3]|select %}{{ 2 in h }}{{ h|list }}|{{ ([1, 2]|select)[0] }}|{{ [1, 2]|reverse|join }}", {}),
    ("{{ [1, 2]|select|length }}", {}),
    ("{{ [1, 2]|map('string')|tojson }}", {}),
    ("{{ [1, 2]|select|last }}", {}),
    ("{{ 'a<'|safe + '<b>' }}|{{ '<b>' + 'a<'|safe }}|{{ ('x'|safe) * 2 }}|{{ '<&\"\''|e }}|{{ 'a'|safe is escaped }}{{ 'a' is escaped }}|{{ ('<'|e)|escape }}|{{ 'x'|safe ~ '<' }}|{{ none|e }}", {}),
    ("{{ 'one two  three'|wordcount }} {{ 'abc'|center(9) }}| {{ 'hello world foo'|truncate(9) }} {{ 'hello world foo'|truncate(9, true) }} {{ 'short'|truncate(9) }}", {}),
    ("{{ [1, 2, 3, 4, 5]|batch(2)|list }} {{ [1, 2, 3]|batch(2, 0)|list }}", {}),
    ("{{ '%s-%d'|format('a', 3) }} {{ '%05.2f|%-4s|%x'|format(3.14159, 'ab', 255) }} {{ '%(a)s!'|format(a='k') }}", {}),
    ("{{ {'a': 1}|attr('items') is defined }} {{ {'a': 1}|attr('a') is defined }}", {}),
    # string, dict and list methods
    ("{{ 'a b c'.split() }} {{ 'a,b,c'.split(',', 1) }} {{ '  x  '.strip() }} {{ 'xxaxx'.strip('x') }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ' a  b '.split() }} {{ 'a  b'.split(' ') }} {{ ''.split() }} {{ ''.split(',') }} {{ ' a b c '.split(none, 1) }} {{ ' a b c '.rsplit(none, 1) }}", {}),
    ("{{ 'a\\n\\nb\\r\\nc'.splitlines() }} {{ 'a\\nb'.splitlines(true) }} {{ '\\n\\nx'.lstrip('\\n') }} {{ 'x\\n\\n'.rstrip('\\n') }} {{ 'x'.lstrip() }}", {}),
    ("{{ 'Hello World'.lower().split(' ') }} {{ 'a-b'.replace('-', '+') }} {{ 'abc'.startswith(('x', 'a')) }} {{ 'abc'.endswith('bc') }} {{ 'abc'.find('c') }} {{ 'héllo'.find('l') }} {{ 'abc'.rfind('z') }} {{ 'aaa'.count('a') }} {{ 'abc'.upper() }} {{ 'hello there'.title() }} {{ \"they're\".title() }} {{ 'ABC'.capitalize() }} {{ 'aBc'.swapcase() }}", {}),
    ("{{ '-'.join(['a', 'b']) }} {{ 'x{}y{}'.format(1, 'z') }} {{ '{0}{0}{name}'.format('a', name='n') }} {{ '12'.isdigit() }} {{ 'ab'.isalpha() }} {{ ' '.isspace() }} {{ 'AB'.isupper() }} {{ 'ab'.islower() }} {{ 'Ab Cd'.istitle() }} {{ '7'.zfill(3) }} {{ 'ab'.ljust(4) }}| {{ 'ab'.rjust(4, '*') }} {{ 'abc'.removeprefix('a') }} {{ 'abc'.removesuffix('c') }} {{ 'a=b=c'.partition('=') }} {{ 'a=b=c'.rpartition('=') }}", {}),
    ("{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 5) }} {{ d.keys()|list }} {{ d.values()|list }} {{ d.items()|list }} {{ d|length }} {{ d.copy() }} {{ [1, 2, 1].count(1) }} {{ [1, 2].index(2) }}", {"d": {"a": 1, "b": 2}}),
    ("{{ 'abc'.index('z') }}", {}),
    ("{{ 'a'.split('') }}", {}),
    # globals
    ("{{ range(5)|list }} {{ range(1, 10, 3)|list }} {{ range(5, 0, -2)|list }} {{ range(0)|list }}", {}),
    ("{{ range(100001)|length }}", {}),
    ("{{ dict(a=1, b='x') }} {{ dict(a=1)|tojson }} {{ dict([('k', 'v')]) }} {{ namespace(a=1).a }} {{ namespace({'b': 2}).b }}", {}),
    ("{{ raise_exception('boom: ' ~ 42) }}", {}),
    ("{{ strftime_now('%Y-%m-%d %d %b %Y %H:%M') }}", {}),
    ("{{ namespace(_x=1) }}", {}),
    # variables HF passes
    ("{{ messages|length }} {{ add_generation_prompt }} {{ bos_token }}{{ eos_token }} {{ tools }} {{ documents }} {{ tools is none }} {{ tools is defined }}", {"messages": [], "add_generation_prompt": True, "bos_token": "<s>", "eos_token": "</s>", "tools": None, "documents": None}),
]

# Syntax the interpreter refuses, with what HF does for it (the fixture keeps HF's result).
UNIT_SYNTAX = [
    "{% include 'x' %}", "{% extends 'base' %}", "{% block b %}{% endblock %}", "{% import 'm' as m %}",
    "{% for x in [1] recursive %}{{ loop(x) }}{% endfor %}", "{{ x|xmlattr }}", "{{ x|nosuchfilter }}",
    "{{ x is nosuchtest }}", "{% do x %}", "{% if x %}", "{{ 1 +* 2 }}", "{% endfor %}", "{{ 'unterminated }}",
    "{% for x in %}{% endfor %}", "{% break %}", "{{ a.b.c( }}",
]


def render(template, messages, add_generation_prompt, special_tokens, kwargs):
    try:
        text = render_jinja_template(conversations=[messages], chat_template=template, add_generation_prompt=add_generation_prompt,
                                     **special_tokens, **kwargs)[0][0]
        return {"text": text}
    except jinja2.exceptions.TemplateSyntaxError as e:
        return {"error": "TemplateSyntaxError", "message": str(e)}
    except Exception as e:  # what HF raises (TemplateError from raise_exception, TypeError, UndefinedError ...)
        return {"error": type(e).__name__, "message": str(e)}


def render_unit(template, variables):
    try:
        return {"text": ctu._compile_jinja_template(template).render(**variables)}
    except Exception as e:
        return {"error": type(e).__name__, "message": str(e)}


def tokenizer_cases(folder, name):
    """apply_chat_template with a real tokenizer folder: text and ids (HF's default: special tokens parsed
    everywhere, also in message contents)."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(folder)
    cases = []
    for cname, turns, gen, kwargs in CONVERSATIONS:
        if "tools" in kwargs:
            continue  # ChatFormat passes no tools
        messages = [message(t) for t in turns]
        try:
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen, **kwargs)
            ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen, return_dict=False, **kwargs)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            # the tokenizer-less path the template fixtures use gives the same text
            same = render(tok.chat_template, messages, gen, tok.special_tokens_map, kwargs)
            assert same.get("text") == text, (name, cname)
            cases.append({"conversation": cname, "text": text, "ids": list(ids)})
        except Exception as e:
            cases.append({"conversation": cname, "error": type(e).__name__, "message": str(e)})
    return {"name": name, "folder": os.path.relpath(folder, ROOT), "special_tokens_map": tok.special_tokens_map, "cases": cases}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-cpp", help="git clone of llama.cpp (models/templates/*.jinja)")
    ap.add_argument("--llama-cpp-repo", default="ggml-org/llama.cpp", help="owner/name recorded as the llama.cpp templates' source")
    ap.add_argument("--hf-js", help="git clone of huggingface/huggingface.js (ollama-utils chat-template-automap.ts)")
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"), help="the shared/ folder (tokenizers/qwen2-bpe)")
    args = ap.parse_args()

    if args.llama_cpp or args.hf_js:
        templates = own_templates()
        if args.llama_cpp:
            templates += llama_cpp_templates(args.llama_cpp, args.llama_cpp_repo)
        if args.hf_js:
            templates += ollama_templates(args.hf_js)
    else:
        templates = [{k: t[k] for k in ("name", "source", "template")} for t in json.load(open(OUT))["templates"]]

    conversations = [{"name": n, "messages": [message(t) for t in turns], "add_generation_prompt": g, "kwargs": kw}
                     for n, turns, g, kw in CONVERSATIONS]
    out_templates = []
    for t in templates:
        special = special_tokens_for(t["name"])
        expected = [render(t["template"], c["messages"], c["add_generation_prompt"], special, c["kwargs"]) for c in conversations]
        out_templates.append({**t, "special_tokens": special, "expected": expected})

    unit = [{"template": t, "variables": v, **render_unit(t, v)} for t, v in UNIT]
    unit += [{"template": t, "variables": {}, **render_unit(t, {}), "syntax": True} for t in UNIT_SYNTAX]

    shared = os.path.normpath(args.shared)
    tokenizers = [tokenizer_cases(os.path.join(shared, "tokenizers", "qwen2-bpe"), "qwen2-bpe"),
                  tokenizer_cases(os.path.join(ROOT, "examples", "models", "kjv-tiny"), "kjv-tiny")]

    fixture = {
        "generator": f"tests/tokenizer/make_chat_template_fixtures.py with transformers {transformers.__version__}, jinja2 {jinja2.__version__}",
        "strftime_now_timestamp": STRFTIME_NOW_TIMESTAMP,
        "conversations": conversations,
        "templates": out_templates,
        "unit": unit,
        "tokenizers": tokenizers,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    pairs = len(out_templates) * len(conversations)
    rendered = sum("text" in e for t in out_templates for e in t["expected"])
    print(f"{OUT}: {len(out_templates)} templates x {len(conversations)} conversations = {pairs} pairs "
          f"({rendered} rendered, {pairs - rendered} errors), {len(unit)} unit cases, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    sys.exit(main())
