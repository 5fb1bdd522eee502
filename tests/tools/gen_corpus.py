#!/usr/bin/env python3
"""Generates tests/corpus/generated.rs: random workflows built from the constructs the
compiler supports (nested if/match/loops, shadowing, awaits inside expressions, break,
continue, early return), for the differential tests. Deterministic for a given seed:

    python3 tests/tools/gen_corpus.py [SEED] [COUNT] > tests/corpus/generated.rs
"""
import random
import sys

SEED = int(sys.argv[1]) if len(sys.argv) > 1 else 7
COUNT = int(sys.argv[2]) if len(sys.argv) > 2 else 60
rng = random.Random(SEED)
NAMES = ["a", "b", "c", "d"]


class Gen:
    def __init__(self):
        self.loop_depth = 0
        self.counter = 0

    def fresh(self, prefix):
        self.counter += 1
        return f"{prefix}{self.counter}"

    def expr(self, scope, depth):
        choices = ["lit", "var", "await", "arith"]
        if depth > 0:
            choices += ["await", "await2", "ifexpr", "block", "effect", "loopval"]
        kind = rng.choice(choices)
        if kind == "var" and scope:
            return rng.choice(scope)
        if kind == "await" and depth > 0:
            task = rng.choice(["inc", "double"])
            return f"{task}({self.expr(scope, depth - 1)}).await"
        if kind == "await2" and depth > 0:
            return f"add({self.expr(scope, depth - 1)}, {self.expr(scope, depth - 1)}).await"
        if kind == "arith" and depth > 0:
            op = rng.choice(["+", "-", "*"])
            return f"(({self.expr(scope, depth - 1)}) {op} ({self.expr(scope, depth - 1)})).rem_euclid(1000)"
        if kind == "ifexpr" and depth > 0:
            return (f"if {self.cond(scope, depth - 1)} {{ {self.expr(scope, depth - 1)} }} "
                    f"else {{ {self.expr(scope, depth - 1)} }}")
        if kind == "block" and depth > 0:
            name = rng.choice(NAMES)
            return (f"{{ let {name} = {self.expr(scope, depth - 1)}; "
                    f"(({name}) + ({self.expr(scope + [name], depth - 1)})).rem_euclid(1000) }}")
        if kind == "effect" and depth > 0:
            return f"add({{ side.push({self.expr(scope, 0)}); {self.expr(scope, 0)} }}, {self.expr(scope, depth - 1)}).await"
        if kind == "loopval" and depth > 0:
            return f"loop {{ if {self.cond(scope, depth - 1)} {{ break {self.expr(scope, depth - 1)}; }} break {self.expr(scope, 0)}; }}"
        return f"{rng.randint(0, 9)}i64"

    def cond(self, scope, depth):
        if rng.random() < 0.4 and depth > 0:
            return f"is_even({self.expr(scope, depth - 1)}).await"
        return f"{self.expr(scope, 0)} % 3 == {rng.randint(0, 2)}"

    def stmts(self, scope, depth, n):
        out = []
        scope = list(scope)
        for _ in range(n):
            s, scope = self.stmt(scope, depth)
            out.append(s)
        return "\n".join(out)

    def stmt(self, scope, depth):
        kinds = ["let", "let", "assign", "trace", "trace"]
        if depth > 0:
            kinds += ["if", "match", "for", "loop", "while", "block", "iflet", "whilelet", "labelled"]
        if self.loop_depth > 0:
            kinds += ["break", "continue"]
        kinds += ["ret"]
        kind = rng.choice(kinds)
        if kind == "let":
            name = rng.choice(NAMES)
            e = self.expr(scope, 2)
            return f"let mut {name} = {e};", scope + [name]
        if kind == "assign" and scope:
            name = rng.choice(scope)
            return f"{name} = {self.expr(scope, 2)};", scope
        if kind == "if":
            els = f" else {{ {self.stmts(scope, depth - 1, 2)} }}" if rng.random() < 0.6 else ""
            return f"if {self.cond(scope, 1)} {{ {self.stmts(scope, depth - 1, 2)} }}{els}", scope
        if kind == "match":
            v = self.expr(scope, 1)
            arms = []
            for i in range(2):
                arms.append(f"{i} => {{ {self.stmts(scope, depth - 1, 2)} }}")
            bound = rng.choice(NAMES)
            arms.append(f"mut {bound} => {{ trace.push({bound}); {self.stmts(scope + [bound], depth - 1, 1)} }}")
            return f"match ({v}).rem_euclid(3) {{ {' '.join(arms)} }}", scope
        if kind in ("for", "loop", "while"):
            self.loop_depth += 1
            i = rng.choice(["i", "j"])
            if kind == "for":
                body = self.stmts(scope + [i], depth - 1, 2)
                s = f"for mut {i} in 0..{rng.randint(1, 3)} {{ trace.push({i}); {body} }}"
            elif kind == "loop":
                g = self.fresh("guard")
                body = self.stmts(scope, depth - 1, 2)
                s = f"let mut {g} = 0; loop {{ {g} += 1; if {g} > {rng.randint(1, 3)} {{ break; }} {body} }}"
            else:
                g = self.fresh("count")
                body = self.stmts(scope, depth - 1, 2)
                s = f"let mut {g} = 0; while {g} < {rng.randint(1, 3)} {{ {g} += 1; {body} }}"
            self.loop_depth -= 1
            return s, scope
        if kind == "iflet":
            name = rng.choice(NAMES)
            return (f"if let Some(mut {name}) = maybe_half({self.expr(scope, 1)}).await "
                    f"{{ trace.push({name}); {self.stmts(scope + [name], depth - 1, 2)} }}"), scope
        if kind == "whilelet":
            w, g = self.fresh("w"), self.fresh("g")
            self.loop_depth += 1
            body = self.stmts(scope, depth - 1, 1)
            self.loop_depth -= 1
            return (f"let mut {w} = {self.expr(scope, 1)} + 64; let mut {g} = 0; "
                    f"while let Some(h) = maybe_half({w}).await {{ {g} += 1; if {g} > 3 {{ break; }} "
                    f"{w} = h; trace.push(h); {body} }}"), scope
        if kind == "labelled":
            label = self.fresh("'outer")
            self.loop_depth += 1
            body = self.stmts(scope + ["i", "j"], depth - 1, 1)
            self.loop_depth -= 1
            return (f"{label}: for mut i in 0..2 {{ for mut j in 0..2 {{ trace.push(i * 10 + j); "
                    f"if {self.cond(scope, 1)} {{ break {label}; }} if {self.cond(scope, 1)} {{ continue {label}; }} "
                    f"{body} }} }}"), scope
        if kind == "block":
            return f"{{ {self.stmts(scope, depth - 1, 2)} }}", scope
        if kind == "break":
            return f"if {self.cond(scope, 1)} {{ break; }}", scope
        if kind == "continue":
            return f"if {self.cond(scope, 1)} {{ continue; }}", scope
        if kind == "ret" and rng.random() < 0.3:
            return f"if {self.cond(scope, 1)} {{ return (-1, trace, side); }}", scope
        return f"trace.push({self.expr(scope, 2)});", scope


print("//! Generated by tests/tools/gen_corpus.py (seed %d): random nestings of the supported" % SEED)
print("//! constructs, compared by the differential tests. Regenerate, do not edit.")
print("#![allow(unused, clippy::all)]")
print()
print("use super::tasks::*;")
print("use flow::workflow;")
print()
names = []
for n in range(COUNT):
    g = Gen()
    body = g.stmts(["x"], 3, rng.randint(3, 6))
    name = f"generated_{n:02}"
    names.append(name)
    print("#[workflow]")
    print(f"pub async fn {name}(mut x: i64) -> (i64, Vec<i64>, Vec<i64>) {{")
    print("    let mut trace: Vec<i64> = Vec::new();")
    print("    let mut side: Vec<i64> = Vec::new();")
    print(f"    {body}")
    print("    (x, trace, side)")
    print("}")
    print()
print("/// Runs every generated workflow through `$check`.")
print("#[macro_export]")
print("macro_rules! for_each_generated {")
print("    ($check:ident) => {")
for name in names:
    print(f"        $check!({name});")
print("    };")
print("}")
