#!/usr/bin/env python3
"""Generates random workflows for the compiler's differential tests.

Each program is ordinary async Rust built from the shapes users write (see SHAPES), with
every value it computes pushed to its output, so a state machine that evaluates anything
in another order, loses a value across a step, or resolves a name differently gives a
different answer from the plain function. `tests/generated.rs` runs the checked-in corpus
plain, compiled, and resumed at every step; `hunt.py` runs thousands more and `reduce.py`
shrinks what it finds.

    python3 tests/tools/gen_corpus.py [--seed S] [--count N] > tests/corpus/generated.rs

Program `i` of seed `S` depends only on `(S, i)`, so a finding is reproduced by its seed
and index alone (`--first i --count 1`). Shapes the compiler cannot handle yet are in
KNOWN_COMPILER_GAPS: left out unless `--with-known-compiler-gaps` is given.
"""
import argparse
import random
import sys

# Every shape the generator can produce, with what it checks.
SHAPES = {
    "control": "if/else, match, if-let, while-let, loops with labels, break/continue, early return",
    "shadowing": "let shadowing in nested blocks, bindings in patterns",
    "eval_order": "side effects inside operands (tuples, arrays, calls, method calls, struct "
    "literals, binary and compound operators, vec!/format!/user macro args) with places read "
    "left of an awaiting operand",
    "move_reassign": "a local moved into a step and reassigned from its result (`acc = append(acc, x).await?`)",
    "partial_move": "a field moved out (`for item in bag.items`), the rest used after; fields named like locals",
    "interior": "Cell/RefCell locals changed through `&self` between steps",
    "block_items": "fn/const declared inside blocks, shadowing module-level ones",
    "block_statics": "a static declared inside a block with a step, shadowing a module-level one",
    "stmt_attrs": "#[cfg(any())], #[cfg(all())], #[allow], #[rustfmt::skip] on statements",
    "cfg_shadowing_let": "a `#[cfg(..)] let` reusing the name of a live local",
    "format_captures": "format strings with implicit captures: {x}, {x:>width$}, {:.prec$}",
    "borrow_before_step": "borrows dead before the step: `Some(&p)` from map.get(&k), indexing in format args, first()",
    "borrowed_match": "if-let/match binding a reference from map.get(&k), dereferenced into a step in the arm",
    "step_in_lookup_key": "a step inside the key of map.get(&key) (with borrow_before_step or borrowed_match)",
    "borrowed_iteration": "`for v in xs.iter()` with steps in the body",
    "user_macros": "macro_rules! defined in the workflow body whose expansion contains `return` or `?`",
    "outside_macros": "the same macros used from their module-level definitions (with user_macros)",
    "await_in_user_macro": "`.await` inside the arguments of a user macro_rules!",
    "let_else": "let-else with a step in the else block",
    "await_in_vec": "`.await` inside `vec!`: `vec![num(x).await?; n]`, `vec![a, num(b).await?, c]`",
    "ranges": "`for i in 0..n` (and rev, inclusive, step_by) with an early exit",
    "huge_ranges": "`for i in 0..5_000_000`, `0..=1 << 40` left after a few steps",
    "upper_case": "upper-case let bindings (`let N = num(x).await?;`)",
    "errors": "`?` on task errors and `return Err(..)`",
    "lazy_ops": "`&&`/`||` whose right operand steps or has a side effect (only run when the left does not decide)",
    "sync_interior": "AtomicI64 and Mutex<Vec<i64>> locals changed through `&self` between steps",
    "block_uses": "`use ... as name` inside a block with a step, hiding a module-level fn of that name",
    "guards": "match arms with guards (no step in the guard) and steps in the arm bodies",
    "destructure": "tuple and struct patterns in `let` bound from values with steps, some fields ignored",
    "block_types": "a struct, enum or static declared in a block with a step and used only inside it",
    "rebound_names": "a String moved into a step, then its name bound again by a match arm, closure or if-let after a step",
}

# Shapes the compiler refuses (some by design, with a clear message), with what it says; kept
# out of the checked-in corpus (README, "Reliability") until it compiles them.
KNOWN_COMPILER_GAPS = {
    "user_macros": "refused with a clear message at the call: a body macro_rules! whose expansion contains `?` or `return`",
    "outside_macros": "documented refusal (README): the compiler cannot see a module-level macro's expansion",
    "await_in_user_macro": "refused with a clear message: `.await` inside a user macro's arguments",
    "block_statics": "refused with a clear message: a static in a block with a step may not hide an outer one",
    "cfg_shadowing_let": "refused with a clear message: a #[cfg]'d let hiding a local of an enclosing block",
}

INT_NAMES = ["a", "b", "c", "n"]
UPPER_NAMES = ["N", "TOTAL"]
LOOP_NAMES = ["i", "j"]
OUTPUT = "(trace, side, text)"


class Var:
    def __init__(self, name, kind, mutable=False):
        self.name, self.kind, self.mutable = name, kind, mutable


class Gen:
    """One program. `scope` is a list of Vars, innermost last; a name bound again hides
    the earlier one."""

    def __init__(self, rng, shapes):
        self.rng = rng
        self.shapes = shapes
        self.counter = 0
        self.loop_depth = 0
        # Blocks entered: a move out of an outer local is only safe at the top level.
        self.nesting = 0
        # Names whose value is borrowed by an enclosing construct: not mutated or moved.
        self.frozen = set()
        # Inside format! args: operands are borrowed, so no operand may mutate a place.
        self.no_place_effects = False
        self.awaits_ok = True

    # -- helpers ------------------------------------------------------------------------
    def on(self, shape):
        return shape in self.shapes

    def chance(self, p):
        return self.rng.random() < p

    def pick(self, xs):
        return self.rng.choice(xs)

    def fresh(self, prefix):
        self.counter += 1
        return f"{prefix}{self.counter}"

    @staticmethod
    def visible(scope):
        seen, out = set(), []
        for v in reversed(scope):
            if v.name not in seen:
                seen.add(v.name)
                out.append(v)
        return out

    def of_kind(self, scope, *kinds):
        return [v for v in self.visible(scope) if v.kind in kinds]

    def mutable_ints(self, scope):
        if self.no_place_effects:
            return []
        return [v for v in self.of_kind(scope, "int") if v.mutable and v.name not in self.frozen]

    # -- expressions --------------------------------------------------------------------
    def leaf(self, scope):
        options = ["lit", "lit"]
        ints = self.of_kind(scope, "int", "place", "ref")
        if ints:
            options += ["var"] * 4
        if self.of_kind(scope, "cell"):
            options.append("cell")
        if self.of_kind(scope, "refcell"):
            options.append("refcell")
        if self.of_kind(scope, "atomic", "mutex"):
            options.append("sync")
        if self.of_kind(scope, "vec", "acc"):
            options.append("vec")
        if self.of_kind(scope, "map"):
            options.append("map")
        if self.on("block_items"):
            options += ["item"]
        kind = self.pick(options)
        if kind == "var":
            v = self.pick(ints)
            return f"*{v.name}" if v.kind == "ref" else v.name
        if kind == "cell":
            return f"{self.pick(self.of_kind(scope, 'cell')).name}.get()"
        if kind == "refcell":
            v = self.pick(self.of_kind(scope, "refcell")).name
            return self.pick([f"({v}.borrow().len() as i64)", f"{v}.borrow().last().copied().unwrap_or(-1)"])
        if kind == "sync":
            v = self.pick(self.of_kind(scope, "atomic", "mutex"))
            if v.kind == "atomic":
                return f"{v.name}.load(SeqCst)"
            # Through a function, so no guard is a temporary of a statement that awaits
            # (held across the step: not Send) or locks again (a deadlock in plain Rust).
            return f"mlen(&{v.name})"
        if kind == "vec":
            v = self.pick(self.of_kind(scope, "vec", "acc"))
            if v.kind == "vec":
                return self.pick([f"{v.name}[{self.rng.randint(0, 2)}]", f"({v.name}.len() as i64)"])
            return f"({v.name}.len() as i64)"
        if kind == "map":
            m = self.pick(self.of_kind(scope, "map")).name
            return f"{m}.get(&{self.rng.randint(0, 4)}).copied().unwrap_or(-2)"
        if kind == "item":
            return self.pick(["BASE", "SCALE"])
        return f"{self.rng.randint(0, 9)}i64"

    def awaiting(self, scope, depth):
        """An int expression that is a step."""
        kind = self.pick(["num", "num", "inc", "add", "checked"] if self.on("errors") else ["num", "num", "inc", "add"])
        if kind == "num":
            return f"num({self.expr(scope, depth - 1)}).await?"
        if kind == "inc":
            return f"inc({self.expr(scope, depth - 1)}).await"
        if kind == "add":
            return f"add({self.operand(scope, depth - 1)}, {self.operand(scope, depth - 1)}).await"
        return f"checked({self.expr(scope, depth - 1)}).await?"

    def effect(self, scope):
        """A statement with a visible side effect, for use inside an operand."""
        targets = self.mutable_ints(scope)
        if targets and self.chance(0.7):
            v = self.pick(targets).name
            return self.pick([f"{v} += {self.rng.randint(1, 5)};", f"{v} = {self.leaf(scope)};"])
        return f"side.push({self.leaf(scope)});"

    def operand(self, scope, depth):
        """An operand of a compound expression: a place read, an effect then a value, a
        step (possibly after an effect), or any expression."""
        if not self.on("eval_order") or depth <= 0:
            return self.expr(scope, depth)
        kind = self.pick(["place", "place", "effect", "step", "effect_step", "expr"])
        if kind == "place":
            return self.leaf(scope)
        if kind == "effect":
            return f"{{ {self.effect(scope)} {self.expr(scope, depth - 1)} }}"
        if kind == "step" and self.awaits_ok:
            return self.awaiting(scope, depth)
        if kind == "effect_step" and self.awaits_ok:
            targets = self.mutable_ints(scope)
            if targets:
                v = self.pick(targets).name
                return f"{{ {v} += 1; num({v}).await? }}"
            return f"{{ {self.effect(scope)} {self.awaiting(scope, depth)} }}"
        return self.expr(scope, depth - 1)

    def operands(self, scope, depth, n):
        return [self.operand(scope, depth) for _ in range(n)]

    def compound(self, scope, depth):
        """An expression evaluating several operands in Rust's order."""
        forms = ["tuple", "array", "call", "method", "struct", "binary", "vec_macro"]
        if self.on("user_macros"):
            forms.append("user_macro")
        form = self.pick(forms)
        a, b, c = self.operands(scope, depth, 3)
        if form == "tuple":
            return f"{{ let t = ({a}, {b}, {c}); mix3(t.0, t.1, t.2) }}"
        if form == "array":
            return f"fold3([{a}, {b}, {c}])"
        if form == "call":
            return f"mix3({a}, {b}, {c})"
        if form == "method":
            return self.pick([f"Meter({a}).mix({b}, {c})", f"({a}).max({b}).wrapping_sub({c}).rem_euclid(1000)"])
        if form == "struct":
            fields = [f"a: {a}", f"b: {b}", f"c: {c}"]
            self.rng.shuffle(fields)
            return f"Triple {{ {', '.join(fields)} }}.mix()"
        if form == "binary":
            return f"(({a}) - ({b}) * 3 + ({c})).rem_euclid(1000)"
        if form == "vec_macro":
            if not self.on("await_in_vec"):
                saved, self.awaits_ok = self.awaits_ok, False
                a, b, c = self.operands(scope, depth, 3)
                self.awaits_ok = saved
            return f"fold_vec(vec![{a}, {b}, {c}])"
        # A user macro's arguments: an `.await` there is its own shape.
        saved = self.awaits_ok
        self.awaits_ok = saved and self.on("await_in_user_macro")
        a, b, c = self.operands(scope, depth, 3)
        self.awaits_ok = saved
        return f"sum3!({a}, {b}, {c})"

    def expr(self, scope, depth):
        if depth <= 0:
            return self.leaf(scope)
        options = ["leaf", "step", "step", "arith", "if", "block", "compound", "compound"]
        options += ["match", "loop_value"]
        if self.on("block_items"):
            options.append("tweak")
        if self.on("user_macros"):
            options.append("macro_try")
        kind = self.pick(options)
        if kind == "step" and self.awaits_ok:
            return self.awaiting(scope, depth)
        if kind == "arith":
            op = self.pick(["+", "-", "*"])
            return f"(({self.expr(scope, depth - 1)}) {op} ({self.expr(scope, depth - 1)})).rem_euclid(1000)"
        if kind == "if":
            return (f"if {self.cond(scope, depth - 1)} {{ {self.expr(scope, depth - 1)} }} "
                    f"else {{ {self.expr(scope, depth - 1)} }}")
        if kind == "block":
            name = self.pick(INT_NAMES)
            inner = scope + [Var(name, "int")]
            return (f"{{ let {name} = {self.expr(scope, depth - 1)}; "
                    f"(({name}) + ({self.expr(inner, depth - 1)})).rem_euclid(1000) }}")
        if kind == "compound":
            return self.compound(scope, depth)
        if kind == "match":
            return (f"match ({self.expr(scope, depth - 1)}).rem_euclid(3) {{ 0 => {self.expr(scope, depth - 1)}, "
                    f"1 => {{ {self.expr(scope, depth - 1)} }} _ => {self.leaf(scope)} }}")
        if kind == "loop_value":
            return (f"loop {{ if {self.cond(scope, depth - 1)} {{ break {self.expr(scope, depth - 1)}; }} "
                    f"break {self.leaf(scope)}; }}")
        if kind == "tweak":
            return f"tweak({self.expr(scope, depth - 1)})"
        if kind == "macro_try":
            saved = self.awaits_ok
            self.awaits_ok = saved and self.on("await_in_user_macro")
            e = self.expr(scope, depth - 1)
            self.awaits_ok = saved
            return f"small!({e})"
        return self.leaf(scope)

    def cond(self, scope, depth):
        if self.on("lazy_ops") and depth > 0 and self.chance(0.3):
            return self.lazy_cond(scope, depth)
        if depth > 0 and self.awaits_ok and self.chance(0.4):
            return f"is_even({self.expr(scope, depth - 1)}).await"
        return f"({self.expr(scope, max(depth - 1, 0))}).rem_euclid(3) == {self.rng.randint(0, 2)}"

    def lazy_cond(self, scope, depth):
        """`L && R` or `L || R`: R (a step, or an effect then a step) runs only when L
        does not decide, so a compiler that evaluates R eagerly or twice shows."""
        op = self.pick(["&&", "||"])
        left = f"({self.leaf(scope)}).rem_euclid(2) == {self.rng.randint(0, 1)}"
        targets = self.mutable_ints(scope)
        if self.awaits_ok and self.chance(0.7):
            if targets and self.chance(0.5):
                v = self.pick(targets).name
                right = f"{{ {v} += 1; is_even({v}).await }}"
            else:
                right = f"{{ side.push({self.leaf(scope)}); is_even({self.expr(scope, depth - 1)}).await }}"
        else:
            right = f"{{ side.push({self.leaf(scope)}); ({self.leaf(scope)}) > 3 }}"
        if self.chance(0.3):
            left, right = f"({right})", left
        return f"({left} {op} {right})"

    # -- statements ---------------------------------------------------------------------
    def block(self, scope, depth, n):
        out, inner = [], list(scope)
        self.nesting += 1
        for _ in range(n):
            s, inner = self.stmt(inner, depth)
            out.append(s)
        self.nesting -= 1
        return " ".join(out)

    def int_name(self):
        if self.on("upper_case") and self.chance(0.15):
            return self.pick(UPPER_NAMES)
        return self.pick(INT_NAMES)

    def stmt(self, scope, depth):
        """Returns (statement, scope after it)."""
        if self.on("stmt_attrs") and self.chance(0.08):
            return self.attributed(scope, depth)
        return self.plain_stmt(scope, depth)

    def attributed(self, scope, depth):
        """A statement with an attribute. Lint and tool attributes are stable on `let`s
        only; `#[cfg]` on any statement."""
        form = self.pick(["cfg_off_let", "cfg_off_stmt", "cfg_on_let", "cfg_on_stmt", "lint_let"])
        if form.startswith("cfg") and form.endswith("_let") and not self.on("cfg_shadowing_let"):
            name = self.fresh("gated")
            s, after = f"let {name} = {self.expr(scope, 2)};", scope + [Var(name, "int")]
        elif form.endswith("_let"):
            s, after = self.s_let(scope, depth)
        else:
            s, after = self.pick([self.s_trace, self.s_block if depth > 0 else self.s_trace])(scope, depth)
        if form.startswith("cfg_off"):
            # Compiled out: nothing it binds exists afterwards.
            return f"#[cfg(any())] {s}", scope
        if form.startswith("cfg_on"):
            return f"#[cfg(all())] {s}", after
        attr = self.pick(["#[allow(unused_variables, unused_mut)]", "#[rustfmt::skip]", "#[allow(clippy::all)]"])
        return f"{attr} {s}", after

    def plain_stmt(self, scope, depth):
        kinds = ["let", "let", "assign", "trace", "trace"]
        if self.on("eval_order"):
            kinds += ["eval", "eval", "compound_assign"]
        if depth > 0 and self.on("control"):
            kinds += ["if", "match", "for", "loop", "while", "iflet", "whilelet", "labelled"]
        if depth > 0 and self.on("shadowing"):
            kinds += ["block"]
        if self.loop_depth > 0 and self.on("control"):
            kinds += ["break", "continue"]
        if self.on("control"):
            kinds.append("ret")
        for shape in ["move_reassign", "partial_move", "interior", "block_items", "format_captures",
                      "borrow_before_step", "borrowed_iteration", "user_macros", "let_else", "await_in_vec", "borrowed_match",
                      "ranges", "errors", "sync_interior", "block_uses", "guards", "destructure", "block_types",
                      "rebound_names"]:
            if self.on(shape) and (depth > 0 or shape not in ("borrowed_iteration", "ranges", "block_items",
                                                               "block_uses", "guards", "block_types")):
                kinds.append(shape)
        kind = self.pick(kinds)
        return getattr(self, "s_" + kind)(scope, depth)

    def s_let(self, scope, depth):
        name = self.int_name()
        mut = "mut " if self.chance(0.7) else ""
        return f"let {mut}{name} = {self.expr(scope, 2)};", scope + [Var(name, "int", bool(mut))]

    def s_assign(self, scope, depth):
        targets = self.mutable_ints(scope)
        if not targets:
            return self.s_let(scope, depth)
        v = self.pick(targets).name
        return f"{v} = {self.expr(scope, 2)};", scope

    def s_compound_assign(self, scope, depth):
        targets = self.mutable_ints(scope)
        if not targets:
            return self.s_eval(scope, depth)
        v = self.pick(targets).name
        # The right operand runs before the add, and may change `v` itself.
        return f"{v} += {self.operand(scope, 2)}; {v} = {v}.rem_euclid(1000);", scope

    def s_trace(self, scope, depth):
        return f"trace.push({self.expr(scope, 2)});", scope

    def s_eval(self, scope, depth):
        form = self.pick(["tuple", "array", "format", "task_args", "expr"])
        if form == "tuple":
            t = self.fresh("t")
            a, b, c = self.operands(scope, 2, 3)
            return f"let {t} = ({a}, {b}, {c}); trace.push({t}.0); trace.push({t}.1); trace.push({t}.2);", scope
        if form == "array":
            a, b, c = self.operands(scope, 2, 3)
            return f"trace.extend([{a}, {b}, {c}]);", scope
        if form == "format":
            # format! borrows its arguments: operands may not assign to places.
            saved = self.no_place_effects
            self.no_place_effects = True
            a, b, c = self.operands(scope, 2, 3)
            self.no_place_effects = saved
            return f'text.push(format!("{{}}|{{}}|{{}}", {a}, {b}, {c}));', scope
        if form == "task_args":
            a, b = self.operands(scope, 2, 2)
            return f"trace.push(add({a}, {b}).await);", scope
        return f"trace.push({self.compound(scope, 2)});", scope

    def s_if(self, scope, depth):
        els = f" else {{ {self.block(scope, depth - 1, 2)} }}" if self.chance(0.6) else ""
        return f"if {self.cond(scope, 1)} {{ {self.block(scope, depth - 1, 2)} }}{els}", scope

    def s_match(self, scope, depth):
        bound = self.pick(INT_NAMES)
        arms = [f"{i} => {{ {self.block(scope, depth - 1, 2)} }}" for i in range(2)]
        arms.append(f"mut {bound} => {{ trace.push({bound}); "
                    f"{self.block(scope + [Var(bound, 'int', True)], depth - 1, 1)} }}")
        return f"match ({self.expr(scope, 1)}).rem_euclid(3) {{ {' '.join(arms)} }}", scope

    def loop_body(self, scope, depth, n):
        self.loop_depth += 1
        body = self.block(scope, depth - 1, n)
        self.loop_depth -= 1
        return body

    def s_for(self, scope, depth):
        i = self.pick(LOOP_NAMES)
        source = f"0..{self.rng.randint(1, 3)}"
        vecs = self.of_kind(scope, "vec", "acc")
        if vecs and self.chance(0.4):
            source = f"{self.pick(vecs).name}.clone()"
        body = self.loop_body(scope + [Var(i, "int", True)], depth, 2)
        return f"for mut {i} in {source} {{ trace.push({i}); {body} }}", scope

    def s_loop(self, scope, depth):
        g = self.fresh("guard")
        body = self.loop_body(scope, depth, 2)
        return f"let mut {g} = 0; loop {{ {g} += 1; if {g} > {self.rng.randint(1, 3)} {{ break; }} {body} }}", scope

    def s_while(self, scope, depth):
        g = self.fresh("count")
        body = self.loop_body(scope, depth, 2)
        return f"let mut {g} = 0; while {g} < {self.rng.randint(1, 3)} {{ {g} += 1; {body} }}", scope

    def s_iflet(self, scope, depth):
        name = self.pick(INT_NAMES)
        inner = scope + [Var(name, "int", True)]
        els = f" else {{ {self.block(scope, depth - 1, 1)} }}" if self.chance(0.4) else ""
        return (f"if let Some(mut {name}) = half({self.expr(scope, 1)}).await? "
                f"{{ trace.push({name}); {self.block(inner, depth - 1, 2)} }}{els}"), scope

    def s_whilelet(self, scope, depth):
        w, g = self.fresh("w"), self.fresh("g")
        body = self.loop_body(scope + [Var("h", "int")], depth, 1)
        return (f"let mut {w} = ({self.expr(scope, 1)}).rem_euclid(100) + 64; let mut {g} = 0; "
                f"while let Some(h) = half({w}).await? {{ {g} += 1; if {g} > 3 {{ break; }} "
                f"{w} = h; trace.push(h); {body} }}"), scope

    def s_labelled(self, scope, depth):
        label = self.fresh("'outer")
        inner = scope + [Var("i", "int"), Var("j", "int")]
        body = self.loop_body(inner, depth, 1)
        return (f"{label}: for i in 0..2 {{ for j in 0..2 {{ trace.push(i * 10 + j); "
                f"if {self.cond(inner, 1)} {{ break {label}; }} if {self.cond(inner, 1)} {{ continue {label}; }} "
                f"{body} }} }}"), scope

    def s_block(self, scope, depth):
        return f"{{ {self.block(scope, depth - 1, 2)} }}", scope

    def s_break(self, scope, depth):
        return f"if {self.cond(scope, 1)} {{ break; }}", scope

    def s_continue(self, scope, depth):
        return f"if {self.cond(scope, 1)} {{ continue; }}", scope

    def s_ret(self, scope, depth):
        if self.chance(0.5):
            return f"if {self.cond(scope, 1)} {{ return Ok({OUTPUT}); }}", scope
        return self.s_trace(scope, depth)

    def s_errors(self, scope, depth):
        if self.chance(0.3):
            return f'if {self.cond(scope, 1)} {{ return Err(format!("stopped at {{}}", {self.leaf(scope)})); }}', scope
        return f"trace.push(checked({self.expr(scope, 1)}).await?);", scope

    # Moves: a Vec or String moved into a step and bound again from its result.
    def s_move_reassign(self, scope, depth):
        accs = self.of_kind(scope, "acc")
        strings = self.of_kind(scope, "string")
        if not accs or (strings and self.chance(0.3)):
            if strings and self.chance(0.6):
                s = self.pick(strings).name
                rest = [v for v in scope if v.name != s]
                return f"{s} = greet({s}, {self.expr(rest, 1)}).await?;", scope
            if not accs:
                name = self.pick(["acc", "acc2"])
                return f"let mut {name}: Vec<i64> = vec![{self.leaf(scope)}];", scope + [Var(name, "acc", True)]
            name = self.pick(["label", "who"])
            return f'let mut {name} = format!("s{{}}", {self.expr(scope, 1)});', scope + [Var(name, "string", True)]
        acc = self.pick(accs).name
        if acc in self.frozen:
            return self.s_trace(scope, depth)
        rest = [v for v in scope if v.name != acc]  # after the move, the operand may not read it
        form = self.pick(["once", "loop", "loop"] + (["shadow"] if self.nesting == 0 else []))
        if form == "once":
            return f"{acc} = append({acc}, {self.expr(rest, 2)}).await?;", scope
        if form == "shadow":
            return f"let mut {acc} = append({acc}, {self.expr(rest, 1)}).await?;", scope + [Var(acc, "acc", True)]
        x = self.pick(["x2", "item"])
        src = self.pick([f"0..{self.rng.randint(1, 3)}", f"vec![{self.leaf(rest)}, {self.leaf(rest)}]"])
        return (f"for {x} in {src} {{ {acc} = append({acc}, {x}).await?; "
                f"if {acc}.len() > 12 {{ break; }} }}"), scope

    def s_partial_move(self, scope, depth):
        bag = self.fresh("bag")
        decl = (f"let {bag} = Bag {{ id: {self.expr(scope, 1)}, items: vec![{self.leaf(scope)}, {self.expr(scope, 1)}], "
                f"name: format!(\"n{{}}\", {self.leaf(scope)}) }};")
        after = scope + [Var(f"{bag}.id", "place")]
        use = self.pick(["items", "name_local", "both"])
        parts = [decl]
        if use in ("items", "both"):
            self.loop_depth += 1
            body = self.block(after + [Var("item", "int")], 0, 1)
            self.loop_depth -= 1
            parts.append(f"for item in {bag}.items {{ trace.push(num(item).await?); {body} }}")
            parts.append(f"trace.push({bag}.id);")
        if use in ("name_local", "both"):
            # A local named like the field it copies; the field is read after the local moved.
            parts.append(f"let name = {bag}.name.clone(); let g = greet(name, {bag}.id).await?; "
                         f"text.push(g + &{bag}.name);")
        return " ".join(parts), after

    def s_interior(self, scope, depth):
        cells, refcells = self.of_kind(scope, "cell"), self.of_kind(scope, "refcell")
        if not cells or (not refcells and self.chance(0.3)):
            if not cells or self.chance(0.5):
                name = self.pick(["hits", "seen"])
                return f"let {name} = Cell::new({self.expr(scope, 1)});", scope + [Var(name, "cell")]
            name = self.pick(["log", "notes"])
            return f"let {name} = RefCell::new(vec![{self.leaf(scope)}]);", scope + [Var(name, "refcell")]
        if cells and (not refcells or self.chance(0.5)):
            c = self.pick(cells).name
            v = self.fresh("v")
            return self.pick([
                f"let {v} = {self.awaiting(scope, 2)}; {c}.set(({c}.get() + {v}).rem_euclid(1000));",
                f"{c}.set(({c}.get() * 3 + {self.leaf(scope)}).rem_euclid(1000));",
                f"trace.push({c}.replace({self.leaf(scope)}));",
            ]), scope
        r = self.pick(refcells).name
        v = self.fresh("v")
        return self.pick([
            f"let {v} = {self.awaiting(scope, 2)}; {r}.borrow_mut().push({v});",
            f"{r}.borrow_mut().push({self.leaf(scope)});",
            f"if {r}.borrow().len() > 6 {{ {r}.borrow_mut().clear(); }}",
        ]), scope

    def s_block_items(self, scope, depth):
        decls = []
        if self.chance(0.7):
            decls.append(f"fn tweak(v: i64) -> i64 {{ (v + {self.rng.randint(20, 90)}).rem_euclid(1000) }}")
        if self.chance(0.6):
            decls.append(f"const BASE: i64 = {self.rng.randint(100, 199)};")
        if self.on("block_statics") and self.chance(0.4):
            decls.append(f"static SCALE: i64 = {self.rng.randint(200, 299)};")
        self.rng.shuffle(decls)
        body = self.block(scope, depth - 1, 2)
        # The items are read inside and after the block: only the inside sees them.
        return (f"{{ {' '.join(decls)} trace.push(tweak({self.awaiting(scope, 1)})); trace.push(BASE + SCALE); "
                f"{body} }} trace.push(tweak(BASE) + SCALE);"), scope

    def s_format_captures(self, scope, depth):
        ints = [v for v in self.of_kind(scope, "int") if "." not in v.name]
        widths = self.of_kind(scope, "usize")
        floats = self.of_kind(scope, "float")
        if not widths or self.chance(0.2):
            w = self.pick(["width", "prec"])
            return f"let {w} = ({self.expr(scope, 2)}).rem_euclid(7) as usize;", scope + [Var(w, "usize")]
        if not floats and self.chance(0.3):
            return f"let ratio = ({self.expr(scope, 2)}) as f64 / 8.0;", scope + [Var("ratio", "float")]
        w = self.pick(widths).name
        forms = [f'text.push(format!("[{{:>{w}$}}]", {self.operand(scope, 2)}));']
        if ints:
            v = self.pick(ints).name
            forms += [f'text.push(format!("[{{{v}:>{w}$}}] {{{v}}}"));',
                      f'text.push(format!("{{{v}:<{w}$}}|{{}}", {self.awaiting(scope, 2)}));',
                      f'text.push(format!("{{{v}:^{w}$?}}"));']
        if floats:
            f = self.pick(floats).name
            forms += [f'text.push(format!("{{{f}:.{w}$}}"));', f'text.push(format!("{{:.{w}$}}", {f}));']
        return self.pick(forms), scope

    def s_borrow_before_step(self, scope, depth):
        maps, vecs = self.of_kind(scope, "map"), self.of_kind(scope, "vec")
        declare_map = not maps and (not vecs or self.chance(0.3))
        if declare_map or (not vecs and self.chance(0.3)):
            if declare_map:
                m = self.pick(["prices", "stock"])
                entries = ", ".join(f"({k}, {self.expr(scope, 1)})" for k in range(4))
                return f"let {m} = BTreeMap::from([{entries}]);", scope + [Var(m, "map")]
            xs = self.pick(["xs", "ys"])
            return f"let {xs} = vec![{self.expr(scope, 1)}, {self.leaf(scope)}, {self.expr(scope, 1)}];", \
                scope + [Var(xs, "vec")]
        targets = self.mutable_ints(scope)
        forms = []
        if maps:
            m = self.pick(maps).name
            saved = self.awaits_ok
            self.awaits_ok = saved and self.on("step_in_lookup_key")
            key = f"({self.expr(scope, 1)}).rem_euclid(5)"
            self.awaits_ok = saved
            if targets and self.on("borrowed_match"):
                t = self.pick(targets).name
                forms.append(f"if let Some(p) = {m}.get(&{key}) {{ {t} += num(*p).await?; {t} = {t}.rem_euclid(1000); }}")
            if self.on("borrowed_match"):
                forms.append(f"match {m}.get(&{key}) {{ Some(p) => trace.push(num(*p).await?), None => trace.push(-3) }}")
            forms.append(f"if let Some(&p) = {m}.get(&{key}) {{ trace.push(inc(p).await); }}")
        if vecs:
            xs = self.pick(vecs).name
            forms.append(f'text.push(format!("{{}} of {{}}", {xs}[{self.rng.randint(0, 2)}], {self.awaiting(scope, 2)}));')
            forms.append(f"let first = {xs}.first().copied().unwrap_or(0); trace.push(num(first).await?);")
        return self.pick(forms), scope

    def s_borrowed_match(self, scope, depth):
        return self.s_borrow_before_step(scope, depth)

    def s_borrowed_iteration(self, scope, depth):
        vecs = self.of_kind(scope, "vec")
        if not vecs:
            return self.s_borrow_before_step(scope, depth)
        xs = self.pick(vecs).name
        self.frozen.add(xs)
        body = self.loop_body(scope + [Var("v", "ref")], depth, 1)
        self.frozen.discard(xs)
        return f"for v in {xs}.iter() {{ trace.push(num(*v).await?); {body} }}", scope

    def s_user_macros(self, scope, depth):
        form = self.pick(["stop", "fail", "try"])
        if form == "stop":
            saved = self.awaits_ok
            self.awaits_ok = saved and self.on("await_in_user_macro")
            cond = self.cond(scope, 1)
            self.awaits_ok = saved
            return f"stop_if!({cond}, {OUTPUT});", scope
        if form == "fail":
            return f'if {self.cond(scope, 1)} {{ fail!("gave up at {{}}", {self.leaf(scope)}); }}', scope
        return f"trace.push(small!({self.leaf(scope)}));", scope

    def s_let_else(self, scope, depth):
        name = self.pick(INT_NAMES)
        exits = [f"return Ok({OUTPUT});"]
        if self.loop_depth > 0:
            exits += ["continue;", "break;"]
        els = f"note({self.expr(scope, 1)}).await?; trace.push({self.awaiting(scope, 1)}); {self.pick(exits)}"
        return f"let Some({name}) = half({self.expr(scope, 2)}).await? else {{ {els} }};", scope + [Var(name, "int")]

    def s_await_in_vec(self, scope, depth):
        rep = self.fresh("rep")
        return (f"let {rep} = vec![{self.awaiting(scope, 2)}; {self.rng.randint(0, 3)}]; "
                f"trace.push({rep}.iter().sum::<i64>()); trace.push({rep}.len() as i64);"), scope

    def s_ranges(self, scope, depth):
        i = self.pick(LOOP_NAMES)
        stop = self.rng.randint(0, 4)
        bound = f"({self.expr(scope, 1)}).rem_euclid(6)"
        if self.on("huge_ranges") and self.chance(0.4):
            bound = self.pick(["5_000_000", "1 << 40"])
        forms = [f"0..{bound}", f"0..={bound}"]
        if "_" in bound or "<<" in bound:
            # Counting down from a huge bound never reaches the early exit; adaptors
            # over a range are not journaled as bounds.
            early_exit = f"{i} >= {stop}"
        else:
            forms += [f"(0..{bound}).rev()", f"(1..{bound}).step_by(2)"]
            early_exit = f"{i} == {stop}"
        body = self.loop_body(scope + [Var(i, "int")], depth, 1)
        return (f"for {i} in {self.pick(forms)} {{ if {early_exit} {{ break; }} "
                f"trace.push(num({i}).await?); {body} }}"), scope

    def s_sync_interior(self, scope, depth):
        atomics, mutexes = self.of_kind(scope, "atomic"), self.of_kind(scope, "mutex")
        if not (atomics or mutexes) or self.chance(0.2):
            if self.chance(0.5):
                name = self.pick(["hits_a", "count_a"])
                return f"let {name} = AtomicI64::new({self.expr(scope, 1)});", scope + [Var(name, "atomic")]
            name = self.pick(["guarded", "shared"])
            return f"let {name} = Mutex::new(vec![{self.leaf(scope)}]);", scope + [Var(name, "mutex")]
        v = self.pick(atomics + mutexes)
        w = self.fresh("w")
        if v.kind == "atomic":
            return self.pick([
                f"let {w} = {self.awaiting(scope, 2)}; {v.name}.fetch_add({w}, SeqCst); "
                f"{v.name}.store({v.name}.load(SeqCst).rem_euclid(1000), SeqCst);",
                f"trace.push({v.name}.swap({self.leaf(scope)}, SeqCst));",
            ]), scope
        return self.pick([
            f"let {w} = {self.awaiting(scope, 2)}; {v.name}.lock().unwrap().push({w});",
            f"{{ let v = {self.leaf(scope)}; let mut g = {v.name}.lock().unwrap(); if g.len() > 5 {{ g.clear(); }} g.push(v); }}",
        ]), scope

    def s_block_uses(self, scope, depth):
        alias = self.pick(["std::cmp::max", "std::cmp::min"])
        body = self.block(scope, depth - 1, 1)
        # Inside the block `pick` is the imported function; after it, the module's.
        return (f"{{ use {alias} as pick; trace.push(pick({self.awaiting(scope, 1)}, {self.leaf(scope)})); "
                f"{body} trace.push(pick({self.leaf(scope)}, 4)); }} trace.push(pick({self.leaf(scope)}, 4));"), scope

    def s_guards(self, scope, depth):
        bound = self.pick(INT_NAMES)
        inner = scope + [Var(bound, "int")]
        limit = self.rng.randint(0, 6)
        arms = [
            f"{bound} if {bound} > {limit} => {{ trace.push({self.awaiting(inner, 1)}); {self.block(inner, depth - 1, 1)} }}",
            f"{bound} if {bound} % 2 == 0 => trace.push({bound} * 3),",
            f"{bound} => {{ trace.push(num({bound}).await? + 1); }}",
        ]
        return f"match ({self.expr(scope, 1)}).rem_euclid(10) {{ {' '.join(arms)} }}", scope

    def s_block_types(self, scope, depth):
        # Fresh names: two blocks declaring the same type name are refused by design
        # (README, the refusals table).
        w, e, f = self.fresh("Wrap"), self.fresh("Side"), self.fresh("LIMIT")
        body = self.block(scope, depth - 1, 1)
        return (f"{{ #[derive(Debug, Clone, Copy)] struct {w}(i64); enum {e} {{ Low, High }} "
                f"static {f}: i64 = {self.rng.randint(1, 9)}; "
                f"let w = {w}({self.awaiting(scope, 1)}); "
                f"let s = if w.0 > {f} {{ {e}::High }} else {{ {e}::Low }}; "
                f"trace.push(match s {{ {e}::Low => w.0 + {f}, {e}::High => w.0 * 2 }}); "
                f'text.push(format!("{{w:?}}")); {body} }}'), scope

    def s_rebound_names(self, scope, depth):
        name, out = self.fresh("moved"), self.fresh("greeting")
        # `name` is moved into the first step; after the second, the same name is bound
        # by an arm, a closure and an `if let`: those are not the moved String.
        return (f'let {name} = format!("m{{}}", {self.expr(scope, 1)}); '
                f"let {out} = greet({name}, {self.leaf(scope)}).await?; "
                f"text.push(match half({self.expr(scope, 1)}).await? {{ Some({name}) => format!(\"{{}}\", {name} + 1), "
                f"None => {out}.clone() }}); "
                f"trace.push([{self.leaf(scope)}, {self.leaf(scope)}].iter().map(|{name}| {name} * 2).sum::<i64>()); "
                f"trace.push(if let Some({name}) = {self.leaf(scope)}.checked_sub(1) {{ {name} }} else {{ 0 }}); "
                f"text.push({out});"), scope

    def s_destructure(self, scope, depth):
        a, b = self.fresh("da"), self.fresh("db")
        if self.chance(0.5):
            return (f"let ({a}, _, mut {b}) = ({self.operand(scope, 2)}, {self.expr(scope, 1)}, {self.operand(scope, 2)}); "
                    f"{b} += 1;", scope + [Var(a, "int"), Var(b, "int", True)])
        return (f"let Triple {{ a: {a}, c: {b}, .. }} = Triple {{ a: {self.operand(scope, 2)}, b: {self.leaf(scope)}, "
                f"c: {self.operand(scope, 2)} }};", scope + [Var(a, "int"), Var(b, "int")])

    # -- the program --------------------------------------------------------------------
    def observe(self, scope):
        """Pushes what every live top-level local holds, so a lost value shows."""
        out = []
        for v in self.visible(scope):
            if v.kind in ("int", "place"):
                out.append(f"trace.push({v.name});")
            elif v.kind == "cell":
                out.append(f"trace.push({v.name}.get());")
            elif v.kind == "refcell":
                out.append(f"trace.extend({v.name}.borrow().iter().copied());")
            elif v.kind == "atomic":
                out.append(f"trace.push({v.name}.load(SeqCst));")
            elif v.kind == "mutex":
                out.append(f"trace.extend(mitems(&{v.name}));")
            elif v.kind in ("vec", "acc"):
                out.append(f"trace.extend({v.name}.iter().copied());")
            elif v.kind == "map":
                out.append(f"trace.extend({v.name}.values().copied());")
            elif v.kind in ("string", "usize", "float"):
                out.append(f'text.push(format!("{{:?}}", {v.name}));')
        return " ".join(out)

    def program(self, name):
        scope = [Var("x", "int", True)]
        stmts = []
        for _ in range(self.rng.randint(3, 6)):
            s, scope = self.stmt(scope, 2)
            stmts.append(s)
        if self.on("user_macros") and not self.on("outside_macros"):
            # Defined in the body, where the compiler can see what they expand to.
            stmts.insert(0, BODY_MACROS)
        body = "\n    ".join(stmts)
        return (f"#[workflow]\npub async fn {name}(mut x: i64) -> Result<(Vec<i64>, Vec<i64>, Vec<String>), String> {{\n"
                f"    let mut trace: Vec<i64> = Vec::new();\n"
                f"    let mut side: Vec<i64> = Vec::new();\n"
                f"    let mut text: Vec<String> = Vec::new();\n"
                f"    {body}\n"
                f"    {self.observe(scope)}\n"
                f"    Ok({OUTPUT})\n}}\n")


# The user macros of the prelude, as a workflow body defines them.
BODY_MACROS = (
    "macro_rules! sum3 { ($a:expr, $b:expr, $c:expr) => { mix3($a, $b, $c) }; } "
    "macro_rules! small { ($v:expr) => { small_or_err($v)? }; } "
    "macro_rules! stop_if { ($cond:expr, $out:expr) => { if $cond { return Ok($out); } }; } "
    "macro_rules! fail { ($($arg:tt)*) => { return Err(format!($($arg)*)) }; }"
)

# The prelude's tasks have names of their own (`generated::...`): tests/generated.rs
# also links tests/corpus/tasks.rs, whose tasks share some of these function names with
# other bodies, and the engine finds a task by its name.
PRELUDE = r"""
use flow::{task, workflow};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering::SeqCst};
use std::sync::Mutex;

#[task(name = "generated::num")]
pub async fn num(x: i64) -> Result<i64, String> {
    Ok(x)
}

#[task(name = "generated::inc")]
pub async fn inc(x: i64) -> i64 {
    (x + 1).rem_euclid(1000)
}

#[task(name = "generated::add")]
pub async fn add(a: i64, b: i64) -> i64 {
    (a + b).rem_euclid(1000)
}

#[task(name = "generated::is_even")]
pub async fn is_even(x: i64) -> bool {
    x % 2 == 0
}

/// Fails for one value in thirteen.
#[task(name = "generated::checked", retry(max_attempts = 1))]
pub async fn checked(x: i64) -> Result<i64, String> {
    if x.rem_euclid(13) == 5 {
        Err(format!("{x} rejected"))
    } else {
        Ok(x)
    }
}

#[task(name = "generated::half")]
pub async fn half(x: i64) -> Result<Option<i64>, String> {
    Ok((x % 2 == 0).then_some(x / 2))
}

#[task(name = "generated::note")]
pub async fn note(x: i64) -> Result<(), String> {
    let _ = x;
    Ok(())
}

#[task(name = "generated::append")]
pub async fn append(mut items: Vec<i64>, x: i64) -> Result<Vec<i64>, String> {
    items.push(x);
    Ok(items)
}

#[task(name = "generated::greet")]
pub async fn greet(name: String, x: i64) -> Result<String, String> {
    Ok(format!("{}/{x}", &name[..name.len().min(12)]))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bag {
    pub id: i64,
    pub items: Vec<i64>,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Triple {
    pub a: i64,
    pub b: i64,
    pub c: i64,
}

impl Triple {
    pub fn mix(&self) -> i64 {
        mix3(self.a, self.b, self.c)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Meter(pub i64);

impl Meter {
    pub fn mix(self, b: i64, c: i64) -> i64 {
        mix3(self.0, b, c)
    }
}

/// Tells its operands apart by position, keeping results small.
pub fn mix3(a: i64, b: i64, c: i64) -> i64 {
    (a.rem_euclid(1000) * 7 + b.rem_euclid(1000) * 31 + c.rem_euclid(1000) * 127).rem_euclid(100_003)
}

pub fn fold3(xs: [i64; 3]) -> i64 {
    mix3(xs[0], xs[1], xs[2])
}

pub fn fold_vec(xs: Vec<i64>) -> i64 {
    mix3(xs[0], xs[1], xs[2])
}

/// Module-level items that blocks in the workflows shadow.
pub fn tweak(v: i64) -> i64 {
    (v * 2 + 1).rem_euclid(1000)
}
pub const BASE: i64 = 10;
pub static SCALE: i64 = 3;
/// A mutex's length and items, without a guard outliving the call.
pub fn mlen(m: &Mutex<Vec<i64>>) -> i64 {
    m.lock().unwrap().len() as i64
}
pub fn mitems(m: &Mutex<Vec<i64>>) -> Vec<i64> {
    m.lock().unwrap().clone()
}
/// Hidden inside some blocks by `use std::cmp::{max, min} as pick`.
pub fn pick(a: i64, b: i64) -> i64 {
    (a * 10 + b).rem_euclid(1000)
}

pub fn small_or_err(v: i64) -> Result<i64, String> {
    if v > 900 {
        Err(format!("{v} too big"))
    } else {
        Ok(v)
    }
}

macro_rules! sum3 {
    ($a:expr, $b:expr, $c:expr) => {
        mix3($a, $b, $c)
    };
}

macro_rules! small {
    ($v:expr) => {
        small_or_err($v)?
    };
}

macro_rules! stop_if {
    ($cond:expr, $out:expr) => {
        if $cond {
            return Ok($out);
        }
    };
}

macro_rules! fail {
    ($($arg:tt)*) => {
        return Err(format!($($arg)*))
    };
}
"""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--first", type=int, default=0, help="index of the first program")
    p.add_argument("--only", help="comma-separated shapes to use (default: all)")
    p.add_argument("--without", default="", help="comma-separated shapes to leave out")
    p.add_argument("--with-known-compiler-gaps", action="store_true",
                   help="also generate the shapes in KNOWN_COMPILER_GAPS")
    p.add_argument("--plain", action="store_true",
                   help="emit plain async fns (no #[workflow]): checks the generator writes valid Rust")
    return p.parse_args(argv)


def shapes_for(args):
    shapes = set(args.only.split(",")) if args.only else set(SHAPES)
    shapes -= set(s for s in args.without.split(",") if s)
    if not args.with_known_compiler_gaps:
        shapes -= set(KNOWN_COMPILER_GAPS)
    unknown = shapes - set(SHAPES)
    if unknown:
        sys.exit(f"unknown shapes: {', '.join(sorted(unknown))}")
    return shapes


def program(seed, index, shapes):
    """Program `index` of `seed`: its name and source."""
    name = f"gen_{seed}_{index:05}"
    return name, Gen(random.Random(f"{seed}/{index}"), shapes).program(name)


def without_workflow(source):
    """The same function as plain async Rust: what the compiled one must agree with."""
    return source.replace("#[workflow]\n", "")


def assemble(programs, origin):
    """A module: the prelude, the `(name, source)` programs, and `for_each_generated!`
    listing them. `origin` says where they came from, for its header."""
    out = [
        f"//! Generated by tests/tools/gen_corpus.py ({origin}).",
        "//! Compared plain vs compiled vs resumed by the differential tests. Regenerate, do not edit.",
        "#![allow(unused, non_snake_case, unreachable_code, unused_braces, unused_parens, clippy::all)]",
        PRELUDE,
    ]
    out += [source for _, source in programs]
    out.append("/// Runs every generated workflow through `$check`.")
    out.append("#[macro_export]\nmacro_rules! for_each_generated {\n    ($check:ident) => {")
    out += [f"        $check!({name});" for name, _ in programs]
    out.append("    };\n}")
    return "\n".join(out) + "\n"


def module(seed, first, count, shapes, plain=False):
    """Programs `first..first + count` of `seed` as a module."""
    programs = [program(seed, index, shapes) for index in range(first, first + count)]
    if plain:
        programs = [(name, without_workflow(source)) for name, source in programs]
    left_out = sorted(set(SHAPES) - shapes)
    return assemble(programs, f"seed {seed}, programs {first}..{first + count}; "
                              f"shapes left out: {', '.join(left_out) or 'none'}")


def main():
    args = parse_args(sys.argv[1:])
    sys.stdout.write(module(args.seed, args.first, args.count, shapes_for(args), args.plain))


if __name__ == "__main__":
    main()
