#!/usr/bin/python3
"""Reference renderer for chat templates: python jinja2 set up as Hugging Face
transformers sets it up (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loop controls, raise_exception, strftime_now, its tojson).

strftime_now() reads a fixed clock (2024-07-26 12:34:56) so renderings are
reproducible; Ferry's tests inject the same instant.

Usage:
  render_chat_template.py CASE.json
      CASE.json is {"template": "...", "context": {...}}; prints the rendering,
      or the error on stderr with exit status 1.
  render_chat_template.py --batch CASES.json
      CASES.json is a list of such objects; prints a JSON list with
      {"ok": true, "output": "..."} or {"ok": false, "error": "..."} each.
"""

import datetime
import json
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXED_NOW = datetime.datetime(2024, 7, 26, 12, 34, 56)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers replaces jinja2's tojson, which would HTML-escape.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return FIXED_NOW.strftime(format)


def make_env():
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


_compiled = {}


def render(env, case):
    source = case["template"]
    if source not in _compiled:
        _compiled[source] = env.from_string(source)
    return _compiled[source].render(**case.get("context", {}))


def main(argv):
    env = make_env()
    if len(argv) == 3 and argv[1] == "--batch":
        with open(argv[2], encoding="utf-8") as f:
            cases = json.load(f)
        results = []
        for case in cases:
            try:
                results.append({"ok": True, "output": render(env, case)})
            except Exception as e:  # any failure is a result to compare
                results.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
        sys.stdout.write(json.dumps(results, ensure_ascii=False))
        return 0
    if len(argv) == 2:
        with open(argv[1], encoding="utf-8") as f:
            case = json.load(f)
        try:
            sys.stdout.write(render(env, case))
        except Exception as e:
            sys.stderr.write(f"{type(e).__name__}: {e}\n")
            return 1
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
