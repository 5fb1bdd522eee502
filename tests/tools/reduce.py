#!/usr/bin/env python3
"""Shrinks a generated workflow that the compiler refuses or gets wrong to a small one
that still fails the same way, by deleting statements (and match arms) while the plain
function stays valid Rust.

    python3 tests/tools/reduce.py --seed 2 --index 7 [--only ...] --expect "use of moved value"
    python3 tests/tools/reduce.py --seed 2 --index 4 --expect miscompile

`--expect` is a piece of the refusal's message, or a failure class of hunt.py (miscompile,
fault, panic, hang, crash). Each round builds every candidate deletion as its own
workflow in one crate (the largest deletions first), keeps the largest one that still
fails, and stops when none does. Prints the reduced workflow.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
import gen_corpus  # noqa: E402
import hunt  # noqa: E402

CANDIDATES_PER_ROUND = 24
RUN_CLASSES = ("miscompile", "fault", "panic", "hang", "crash")


def statement_spans(body):
    """(start, end) of every statement in every block of `body`, string literals skipped."""
    closing = {"(": ")", "[": "]", "{": "}"}
    stack, spans, i = [], [], 0
    starts = {}  # position of a `{` -> start of the current statement inside it
    while i < len(body):
        ch = body[i]
        if ch == '"':
            i += 1
            while body[i] != '"':
                i += 2 if body[i] == "\\" else 1
        elif ch in closing:
            stack.append((ch, i))
            if ch == "{":
                starts[i] = i + 1
        elif ch in ")]}":
            opener, pos = stack.pop()
            if ch == "}" and stack and stack[-1][0] == "{":
                # A `}` at statement level ends a statement unless the statement goes on.
                rest = body[i + 1:].lstrip()
                inner = stack[-1][1]
                if rest and not re.match(r"else\b|[.?;,)\]}]|as\b", rest):
                    spans.append((starts[inner], i + 1))
                    starts[inner] = i + 1
        elif ch == ";" and stack and stack[-1][0] == "{":
            inner = stack[-1][1]
            spans.append((starts[inner], i + 1))
            starts[inner] = i + 1
        i += 1
    return [(s, e) for s, e in spans if body[s:e].strip()]


def failing(variants, expect, plain_check=True):
    """The names among `variants` (name -> source) that fail as `expect` and are valid Rust."""
    def module(names, plain):
        programs = [(n, gen_corpus.without_workflow(variants[n]) if plain else variants[n]) for n in names]
        return gen_corpus.assemble(programs, "reduce.py")

    names = list(variants)
    invalid, stray = hunt.build(module(names, plain=True), plain=True)
    if stray:
        return set()
    valid = [n for n in names if n not in invalid]
    refused, stray = hunt.build(module(valid, plain=False))
    if stray:
        return set()
    if expect not in RUN_CLASSES:
        return {n for n, err in refused.items() if expect in err["message"]}
    built = [n for n in valid if n not in refused]
    if not built:
        return set()
    hunt.build(module(built, plain=False))
    return {name for name, kind, _ in hunt.run_binary(built) if kind == expect}


def reduce(source, expect):
    name = re.search(r"pub async fn (\w+)", source).group(1)
    if not failing({name: source}, expect):
        sys.exit(f"{name} does not fail as `{expect}`")
    open_at = source.index("{", source.index(") ->"))
    while True:
        body = source[open_at:]
        spans = sorted(statement_spans(body), key=lambda s: s[0] - s[1])[:CANDIDATES_PER_ROUND]
        variants = {}
        for k, (s, e) in enumerate(spans):
            variants[f"gen_red_{k}"] = (source[:open_at] + body[:s] + body[e:]).replace(name, f"gen_red_{k}", 1)
        survivors = failing(variants, expect)
        if not survivors:
            return source
        best = min(survivors, key=lambda n: len(variants[n]))
        source = variants[best].replace(best, name, 1)
        print(f"  {len(source)} chars", file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int)
    p.add_argument("--index", type=int)
    p.add_argument("--file", help="reduce the workflow in this file instead (e.g. a finding's `source`)")
    p.add_argument("--expect", required=True)
    p.add_argument("--only")
    p.add_argument("--without", default="")
    p.add_argument("--with-known-compiler-gaps", action="store_true")
    args = p.parse_args()
    hunt.setup_crate()
    if args.file:
        with open(args.file) as f:
            source = f.read()
    else:
        _, source = gen_corpus.program(args.seed, args.index, gen_corpus.shapes_for(args))
    print(reduce(source, args.expect))


if __name__ == "__main__":
    main()
