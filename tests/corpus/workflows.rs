//! The differential corpus: each workflow exercises constructs the compiler supports,
//! alone and nested. Every one takes an `i64` so property tests can generate inputs.
#![allow(clippy::all)]
// Hash maps kept across steps warn (deprecation is how a macro warns); the corpus
// uses them only in ways that do not depend on their order.
#![allow(deprecated)]

use super::tasks::*;
use flow::workflow;

#[workflow]
pub async fn straight_line(x: i64) -> i64 {
    let a = inc(x).await;
    let b = double(a).await;
    add(a, b).await
}

#[workflow]
pub async fn nested_awaits(x: i64) -> i64 {
    let y = add(inc(x).await, double(inc(x).await).await).await;
    double(double(y).await).await
}

#[workflow]
pub async fn shadowing(x: i64) -> i64 {
    let x = inc(x).await;
    let x = double(x).await;
    let y = {
        let x = inc(x).await;
        x * 100
    };
    x + y
}

#[workflow]
pub async fn if_else(x: i64) -> String {
    if is_even(x).await {
        let h = double(x).await;
        label(h).await
    } else if x > 10 {
        label(x).await
    } else {
        "small odd".to_string()
    }
}

#[workflow]
pub async fn if_value(x: i64) -> i64 {
    let v = if x > 0 { inc(x).await } else { double(x).await };
    let w = if is_even(v).await { v } else { v + 1000 };
    v + w
}

#[workflow]
pub async fn if_let_await(x: i64) -> i64 {
    if let Some(h) = maybe_half(x).await {
        let d = double(h).await;
        d + h
    } else {
        -1
    }
}

#[workflow]
pub async fn match_scrutinee(x: i64) -> String {
    match shape_of(x).await {
        Shape::Circle(r) => {
            let d = double(r).await;
            format!("circle {d}")
        }
        Shape::Rect { w, h } if w > 5 => {
            let a = add(w, h).await;
            format!("wide rect {a}")
        }
        Shape::Rect { w, .. } => format!("rect {w}"),
        Shape::Empty => label(x).await,
    }
}

#[workflow]
pub async fn match_value(x: i64) -> i64 {
    let r = match x.rem_euclid(4) {
        0 => inc(x).await,
        1 => double(x).await,
        2 => {
            let a = inc(x).await;
            let b = inc(a).await;
            a * b
        }
        _ => x,
    };
    r + 1
}

#[workflow]
pub async fn loop_counter(x: i64) -> i64 {
    let mut i = 0;
    let mut acc = x;
    loop {
        if i >= 4 {
            break;
        }
        acc = add(acc, i).await;
        i += 1;
    }
    acc
}

#[workflow]
pub async fn loop_break_value(x: i64) -> i64 {
    let mut n = x.rem_euclid(10);
    let found = loop {
        n = inc(n).await;
        if n % 3 == 0 {
            break n * 10;
        }
    };
    found + n
}

#[workflow]
pub async fn while_cond_await(x: i64) -> i64 {
    let mut n = x.rem_euclid(9);
    while !is_even(n).await {
        n = add(n, 3).await;
    }
    n
}

#[workflow]
pub async fn while_plain(x: i64) -> i64 {
    let mut n = x.rem_euclid(5);
    let mut steps = 0;
    while n < 12 {
        n = double(n + 1).await;
        steps += 1;
    }
    n * 100 + steps
}

#[workflow]
pub async fn while_let_await(x: i64) -> i64 {
    let mut n = x.rem_euclid(64) + 64;
    let mut halvings = 0;
    while let Some(h) = maybe_half(n).await {
        n = h;
        halvings += 1;
    }
    n * 10 + halvings
}

#[workflow]
pub async fn for_owned(x: i64) -> i64 {
    let items = vec![x, x + 1, x + 2];
    let mut total = 0;
    for item in items {
        total += double(item).await;
    }
    total
}

#[workflow]
pub async fn for_from_task(x: i64) -> Vec<i64> {
    let mut out = Vec::new();
    for i in range_of(x.rem_euclid(6)).await {
        out.push(inc(i).await);
    }
    out
}

#[workflow]
pub async fn for_range_tuple(x: i64) -> i64 {
    let pairs: Vec<(i64, i64)> = (0..3).map(|i| (i, x)).collect();
    let mut acc = 0;
    for (i, v) in pairs {
        acc += add(i, v).await;
    }
    for k in 0..2 {
        acc = add(acc, k).await;
    }
    acc
}

#[workflow]
pub async fn continue_in_loop(x: i64) -> Vec<i64> {
    let mut kept = Vec::new();
    for i in 0..6 {
        if !is_even(i + x).await {
            continue;
        }
        kept.push(i);
    }
    kept
}

#[workflow]
pub async fn labelled_nested(x: i64) -> (i64, i64) {
    let mut outer_count = 0;
    let mut last = 0;
    'outer: for i in 0..4 {
        outer_count += 1;
        for j in 0..4 {
            last = add(i * 10, j).await;
            if j == 2 {
                continue 'outer;
            }
            if last > 20 + x.rem_euclid(5) {
                break 'outer;
            }
        }
    }
    (outer_count, last)
}

#[workflow]
pub async fn try_in_loop(x: i64) -> Result<i64, String> {
    let mut sum = 0;
    for i in 0..5 {
        sum += checked(x + i).await?;
    }
    Ok(sum)
}

#[workflow]
pub async fn early_return(x: i64) -> i64 {
    let a = inc(x).await;
    if a > 10 {
        return a;
    }
    let b = double(a).await;
    if b < 0 {
        return b - 1;
    }
    b + 1000
}

#[workflow]
pub async fn return_in_loop(x: i64) -> i64 {
    let mut n = x.rem_euclid(20);
    loop {
        n = inc(n).await;
        if n % 7 == 0 {
            return n;
        }
    }
}

#[workflow]
pub async fn match_errors(x: i64) -> Result<String, CorpusError> {
    let v = match checked(x).await {
        Ok(v) => v,
        Err(e) => {
            let l = label(-1).await;
            return Err(CorpusError::Check(format!("{e} {l}")));
        }
    };
    let again = checked(v + 1).await?;
    Ok(format!("{v}/{again}"))
}

#[workflow]
pub async fn question_conversion(x: i64) -> Result<i64, CorpusError> {
    let a = checked(x).await?;
    let b = checked(inc(a).await).await?;
    Ok(a + b)
}

#[workflow]
pub async fn option_workflow(x: i64) -> Option<i64> {
    let h = maybe_half(x).await?;
    let q = maybe_half(h).await?;
    Some(q + h)
}

#[workflow]
pub async fn block_expression(x: i64) -> i64 {
    let total = {
        let a = inc(x).await;
        let b = {
            let c = double(a).await;
            c + 1
        };
        a + b
    };
    total * 2
}

#[workflow]
pub async fn in_condition(x: i64) -> i64 {
    let mut r = 0;
    if is_even(x).await && is_even(inc(x).await).await {
        r += 1;
    }
    if is_even(x).await || is_even(double(x).await).await {
        r += 10;
    }
    if x > 3 && is_even(x).await {
        r += 100;
    }
    r
}

#[workflow]
pub async fn format_args(x: i64) -> String {
    let a = inc(x).await;
    let s = format!("{} and {}", a, double(a).await);
    let v = vec![inc(1).await, a, inc(2).await];
    format!("{s} {v:?} {a}")
}

#[workflow]
pub async fn evaluation_order(x: i64) -> Vec<String> {
    let mut log = Vec::new();
    log.push(format!("start {x}"));
    let r = add(
        {
            log.push("first operand".to_string());
            x
        },
        inc(x).await,
    )
    .await;
    log.push(format!("sum {r}"));
    log
}

#[workflow]
pub async fn moves_between_steps(x: i64) -> super::tasks::Account {
    let account = super::tasks::Account {
        id: format!("acct-{x}"),
        balance: 0,
        history: Vec::new(),
    };
    let account = deposit(account, x).await;
    let mut account = deposit(account, 5).await;
    account.id.push_str("-final");
    let copy = account.clone();
    let account = deposit(copy, inc(x).await).await;
    account
}

#[workflow]
pub async fn reassign_across(x: i64) -> (i64, String) {
    let mut name = String::from("n");
    let mut v = x;
    for _ in 0..3 {
        v = double(v).await;
        name = format!("{name}{v}");
    }
    name.push('!');
    let v2 = inc(v).await;
    (v2, name)
}

#[workflow]
pub async fn loop_in_match_in_loop(x: i64) -> i64 {
    let mut acc = 0;
    for i in 0..3 {
        match (i + x).rem_euclid(3) {
            0 => {
                let mut k = 0;
                while k < 2 {
                    acc = add(acc, k).await;
                    k += 1;
                }
            }
            1 => {
                for j in 0..2 {
                    if j == 1 {
                        break;
                    }
                    acc = add(acc, 100).await;
                }
            }
            _ => acc += 1000,
        }
    }
    acc
}

#[workflow]
pub async fn tuple_destructure(x: i64) -> i64 {
    let (q, r) = split(x).await;
    let (a, b) = (inc(q).await, inc(r).await);
    a * 100 + b
}

#[workflow]
pub async fn closures_untouched(x: i64) -> i64 {
    let factor = inc(x).await;
    let xs: Vec<i64> = (0..4).map(|i| i * factor).collect();
    let total: i64 = xs.iter().sum();
    let doubled = double(total).await;
    let f = |v: i64| v + doubled;
    f(1)
}

#[workflow]
pub async fn inner_plain_loop(x: i64) -> i64 {
    let mut found = -1;
    let bound = inc(x.rem_euclid(10)).await;
    for i in 0..bound {
        if i * i > bound {
            found = i;
            break;
        }
    }
    let mut sum = 0;
    loop {
        sum += 1;
        if sum > 3 {
            break;
        }
    }
    add(found, sum).await
}

#[workflow]
pub async fn unit_workflow(x: i64) {
    let a = inc(x).await;
    if a > 0 {
        double(a).await;
    }
}

#[workflow]
pub async fn no_args() -> i64 {
    let a = inc(1).await;
    a + 1
}

#[workflow]
pub async fn many_args(a: i64, b: String, c: Vec<i64>) -> String {
    let n = add(a, c.len() as i64).await;
    format!("{b}:{n}:{}", c.iter().sum::<i64>())
}

#[workflow]
pub async fn no_awaits(x: i64) -> i64 {
    let mut v = x;
    for i in 0..3 {
        v += i;
    }
    v
}

#[workflow]
pub async fn compound_assign(x: i64) -> i64 {
    let mut v = x;
    v += inc(v).await;
    v *= double(2).await;
    v -= add(v, 1).await / 2;
    v
}

#[workflow]
pub async fn struct_and_index(x: i64) -> super::tasks::Account {
    let amounts = vec![x, inc(x).await, 3];
    super::tasks::Account {
        id: label(amounts[1]).await,
        balance: amounts[double(0).await as usize],
        history: amounts,
    }
}

#[workflow]
pub async fn labelled_block(x: i64) -> i64 {
    let v = 'done: {
        let a = inc(x).await;
        if a % 2 == 0 {
            break 'done a;
        }
        double(a).await
    };
    v + 1
}

#[workflow]
pub async fn let_else(x: i64) -> i64 {
    let Some(h) = maybe_half(x).await else {
        return -7;
    };
    inc(h).await
}

#[workflow]
pub async fn child_plain_call(x: i64) -> i64 {
    // A helper that is ordinary Rust between steps.
    fn helper(v: i64) -> i64 {
        v * 3
    }
    let a = inc(x).await;
    helper(a) + helper(double(a).await)
}

#[workflow]
pub async fn while_with_break_value_and_return(x: i64) -> Result<i64, String> {
    let mut i = 0;
    let mut total = 0;
    while i < 6 {
        i += 1;
        let v = checked(i + x.rem_euclid(3)).await;
        match v {
            Ok(v) if v > 6 => break,
            Ok(v) => total += v,
            Err(e) if total > 10 => return Err(e),
            Err(_) => continue,
        }
    }
    Ok(total)
}

#[workflow]
pub async fn parallel_join(x: i64) -> (i64, String, i64) {
    let (a, b) = flow::join!(inc(x), label(x)).await;
    let (c,) = flow::join!(double(a)).await;
    (a, b, c)
}

#[workflow]
pub async fn shadowed_by_patterns(x: i64) -> (i64, i64, i64) {
    let v = x * 3;
    if let Some(v) = maybe_half(x).await {
        double(v).await;
    }
    let h = x - 1;
    match maybe_half(x + 1).await {
        Some(h) => {
            inc(h).await;
        }
        None => {}
    }
    let i = 100;
    for i in 0..2 {
        add(i, x).await;
    }
    (v, h, i)
}

#[workflow]
pub async fn places_across_steps(x: i64) -> (Vec<i64>, super::tasks::Account) {
    let mut v = vec![x, x + 1];
    v[0] = inc(v[0]).await;
    v.push(double(v[1]).await);
    let mut acct = super::tasks::Account {
        id: "a".into(),
        balance: x,
        history: vec![],
    };
    acct.balance += inc(acct.balance).await;
    acct.history.push(label(acct.balance).await.len() as i64);
    (v, acct)
}

#[workflow]
pub async fn labelled_break_value(x: i64) -> i64 {
    let mut n = 0;
    let found = 'outer: loop {
        loop {
            n = inc(n).await;
            if n > x.rem_euclid(5) + 2 {
                break 'outer n * 2;
            }
            if n % 2 == 0 {
                continue 'outer;
            }
        }
    };
    found + n
}

/// Regression: a `let` inside a loop body, after a step, shadows an outer local that the
/// next iteration reads again (the inner value was once handed over as the outer one).
#[workflow]
pub async fn shadow_in_loop_body(x: i64) -> Vec<i64> {
    let c = x;
    let mut seen = Vec::new();
    let mut n = 0;
    loop {
        n += 1;
        if n > 3 {
            break;
        }
        seen.push(c);
        let c = add(c, 100).await * 2 + c;
        seen.push(c);
    }
    seen
}

#[workflow]
pub async fn fan_out(x: i64) -> (Vec<i64>, i64) {
    let n = x.rem_euclid(7) + 3;
    let doubled = flow::map(0..n, 2, |i| double(i + x)).await;
    let total: i64 = doubled.iter().sum();
    (doubled, inc(total).await)
}

#[workflow]
pub async fn fan_out_tolerant(x: i64) -> Result<Vec<Result<i64, String>>, String> {
    let items: Vec<i64> = (0..6).map(|i| x + i).collect();
    flow::map(items, 3, checked)
        .tolerate_failures(2)
        .await
        // How many failed when the map stopped depends on timing on an engine; whether it
        // failed does not.
        .map_err(|e| format!("more than {} of {} failed", e.tolerated, e.total))
}

/// More failures than tolerated: the map fails (on an engine, the rest are cancelled).
#[workflow]
pub async fn fan_out_over_tolerance(x: i64) -> Result<Vec<Result<i64, String>>, String> {
    let items: Vec<i64> = (0..6).map(|i| i - 3 - x.abs()).collect();
    flow::map(items, 2, checked)
        .tolerate_failures(1)
        .await
        .map_err(|e| format!("more than {} of {} failed", e.tolerated, e.total))
}

// ----- operand evaluation order: places before a step are read before it -----------

/// A place read before an operand that changes it and then awaits: plain Rust reads it
/// first (issue 10's repro).
#[workflow]
pub async fn order_place_then_step(x: i64) -> (i64, i64) {
    let mut n = x;
    let pair = (n, {
        n += 1;
        inc(n).await
    });
    pair
}

/// The same in call arguments, array elements and `vec!`, with the step in between
/// reassigning the place or calling a `&mut self` method on it.
#[workflow]
pub async fn order_call_args_and_arrays(x: i64) -> (i64, [i64; 2], Vec<i64>, i64) {
    let mut n = x;
    let sum = add(n, {
        n *= 3;
        double(n).await
    })
    .await;
    let mut v = vec![x];
    let arr = [v.len() as i64, {
        v.push(1);
        inc(v.len() as i64).await
    }];
    let listed = vec![n, {
        n -= 1;
        inc(n).await
    }];
    (sum, arr, listed, n)
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pair {
    pub a: i64,
    pub b: i64,
}

/// Struct fields, binary operators (by value and comparisons), a `Copy` receiver, and
/// an indexed read borrowed by `format!` (read after the step, bounds-checked before).
#[workflow]
pub async fn order_struct_binary_receiver(x: i64) -> String {
    let mut n = x;
    let p = Pair {
        a: n,
        b: {
            n += 5;
            double(n).await
        },
    };
    let diff = n - {
        n = 100;
        inc(n).await
    };
    let same = n == {
        n += 1;
        inc(n - 2).await
    };
    let bigger = n.max({
        n = -50;
        inc(n).await
    });
    let names = vec![format!("n{x}"), "other".to_string()];
    let text = format!("{} of {}", names[0], label(n).await);
    format!("{p:?} {diff} {same} {bigger} {text} {n}")
}

// ----- items keep their block's scope ------------------------------------------------

fn fmt_id(x: i64) -> String {
    format!("id-{x}")
}

/// A function declared in a block applies to that block only (issue 10's repro).
#[workflow]
pub async fn scoped_fn(x: i64) -> String {
    let first = fmt_id(inc(x).await);
    let second = {
        fn fmt_id(x: i64) -> String {
            format!("inner-{x}")
        }
        fmt_id(inc(x + 1).await)
    };
    let third = fmt_id(double(x).await);
    format!("{first} {second} {third}")
}

/// Constants and `use`s of the same name in several blocks and at the top.
#[workflow]
pub async fn scoped_consts_same_name(x: i64) -> i64 {
    const K: i64 = 1;
    let a = {
        const K: i64 = 10;
        inc(x).await * K
    };
    let b = {
        const K: i64 = 100;
        let v = double(x).await;
        v * K + K
    };
    let c = if x > 0 {
        use std::cmp::max as pick;
        pick(inc(x).await, K)
    } else {
        use std::cmp::min as pick;
        pick(double(x).await, K)
    };
    a + b + c + K
}

/// A loop body's function, and one of the same name at the top of the body.
#[workflow]
pub async fn scoped_fn_in_loop(x: i64) -> i64 {
    let mut total = 0;
    for i in 0..3 {
        fn weight(i: i64) -> i64 {
            i * 7
        }
        total += weight(inc(i + x).await);
    }
    fn weight(i: i64) -> i64 {
        i
    }
    total + weight(x)
}

// ----- interior mutability: what changed is decided by the value ---------------------

/// A `Cell` that is not `mut` but changes between steps (issue 10's repro).
#[workflow]
pub async fn cell_across_steps(x: i64) -> i64 {
    let total = std::cell::Cell::new(0);
    let v = inc(x).await;
    total.set(v);
    double(0).await;
    total.get() + 1
}

/// A `RefCell` filled in a loop of steps.
#[workflow]
pub async fn refcell_across_steps(x: i64) -> Vec<i64> {
    let log = std::cell::RefCell::new(Vec::new());
    for i in 0..3 {
        let v = inc(x + i).await;
        log.borrow_mut().push(v);
    }
    let last = double(x).await;
    log.borrow_mut().push(last);
    log.into_inner()
}

/// An atomic and a `Mutex`, changed through `&self` between steps.
#[workflow]
pub async fn atomic_and_mutex_across_steps(x: i64) -> (i64, String) {
    use std::sync::atomic::{AtomicI64, Ordering::SeqCst};
    let hits = AtomicI64::new(0);
    let name = std::sync::Mutex::new(String::new());
    hits.fetch_add(inc(x).await, SeqCst);
    let l = label(x).await;
    name.lock().unwrap().push_str(&l);
    hits.fetch_add(double(x).await, SeqCst);
    (hits.load(SeqCst), name.into_inner().unwrap())
}

// ----- attributes on statements mean what they mean in plain Rust --------------------

/// A `#[cfg]`'d-out step is not run; a `#[cfg]`'d-in `let` binds (issue 10's repros).
#[workflow]
pub async fn cfg_on_steps(x: i64) -> i64 {
    let a = inc(x).await;
    #[cfg(any())]
    double(a * 100).await;
    #[cfg(all())]
    let b = double(a).await;
    #[cfg(any())]
    let b = inc(b).await;
    a + b
}

/// Locals bound under a false predicate, used only under it; lint attributes.
#[workflow]
pub async fn cfg_locals_and_lints(x: i64) -> i64 {
    #[cfg(any())]
    let extra = inc(x).await;
    let base = double(x).await;
    #[cfg(any())]
    let base = base + extra;
    #[cfg(not(any()))]
    let kept = add(base, 1).await;
    #[allow(unused_variables)]
    let unused = inc(kept).await;
    #[rustfmt::skip]
    let z = add(kept,   base).await;
    z
}

/// `#[cfg]` on blocks in a loop of steps and on match arms.
#[workflow]
pub async fn cfg_in_loops_and_arms(x: i64) -> i64 {
    let mut total = 0;
    for i in 0..3 {
        #[cfg(any())]
        {
            total += inc(i).await;
        }
        #[cfg(not(any()))]
        {
            total += double(i + x).await;
        }
    }
    let r = match x.rem_euclid(3) {
        #[cfg(any())]
        0 => inc(1000).await,
        0 => double(x).await,
        #[cfg(all())]
        1 => inc(x).await,
        _ => x,
    };
    total + r
}

// ----- hash maps across steps: only order-independent uses are exact -----------------

/// Lookups in a `HashMap` kept across steps (its order is not used).
#[workflow]
pub async fn hash_map_lookups(x: i64) -> (i64, bool) {
    let mut prices = std::collections::HashMap::new();
    prices.insert("a".to_string(), inc(x).await);
    prices.insert("b".to_string(), double(x).await);
    let total = add(prices["a"], prices["b"]).await;
    (total, prices.contains_key("c"))
}

/// A `HashSet` whose items are read back in sorted order after a step.
#[workflow]
pub async fn hash_set_sorted(x: i64) -> Vec<i64> {
    let mut seen = std::collections::HashSet::new();
    for i in 0..4 {
        seen.insert(inc(x + i % 2).await);
    }
    let _ = double(x).await;
    let mut out: Vec<i64> = seen.into_iter().collect();
    out.sort();
    out
}

/// A `BTreeMap` (the fix the warning suggests): keys before a step and values after it
/// line up.
#[workflow]
pub async fn btree_map_order(x: i64) -> Vec<(String, i64)> {
    let mut m = std::collections::BTreeMap::new();
    for k in ["z", "a", "m"] {
        m.insert(k.to_string(), x);
    }
    let keys: Vec<String> = m.keys().cloned().collect();
    let bump = inc(x).await;
    let values: Vec<i64> = m.values().map(|v| v + bump).collect();
    keys.into_iter().zip(values).collect()
}

// ----- ordinary Rust: liveness and scoping follow Rust's rules -------------------------

/// A local moved into a step and reassigned from its result (issue 10's first shape).
#[workflow]
pub async fn move_into_step_and_reassign(x: i64) -> Result<(Vec<i64>, Account), String> {
    let xs = vec![x, 2, 3];
    let mut acc = Vec::new();
    for v in xs {
        acc = append(acc, v).await?;
    }
    let mut account = Account {
        id: format!("a{x}"),
        balance: 0,
        history: Vec::new(),
    };
    account = deposit(account, 10).await;
    account = deposit(account, x).await;
    Ok((acc, account))
}

/// A field and a method named like a local moved into a step.
#[workflow]
pub async fn field_named_like_moved_local(x: i64) -> String {
    let user = Account {
        id: format!("u{x}"),
        balance: x,
        history: vec![x],
    };
    let id = user.id.clone();
    let g = greet(id).await;
    let history = user.history.len();
    g + &user.id + &history.to_string()
}

/// Format-spec captures (`{label:>width$}`, `{:.prec$}`) and an upper-case `let`
/// across steps.
#[workflow]
pub async fn format_spec_captures(x: i64) -> String {
    let width = (x.rem_euclid(5) + 3) as usize;
    let prec = 2usize;
    let label = inc(x).await.to_string();
    #[allow(non_snake_case)]
    let N = double(x).await;
    let ratio = N as f64 / 3.0;
    format!("[{label:>width$}] {:.prec$} {ratio:.1$} {N}", ratio, prec)
}

/// Steps in the `else` of a `let ... else`.
#[workflow]
pub async fn let_else_with_steps(x: i64) -> i64 {
    let Some(half) = maybe_half(x).await else {
        let noted = inc(x).await;
        return noted * 100;
    };
    let Some(mut q) = maybe_half(half).await else {
        return double(half).await;
    };
    q += 1;
    half + q
}

/// A range of 2^40 items with an early return: journaled as its bounds, never
/// materialized.
#[workflow]
pub async fn huge_range_early_return(x: i64) -> i64 {
    let n: i64 = 1 << 40;
    let mut acc = 0;
    for i in x..n {
        acc += inc(i).await;
        if i >= x + 3 {
            return acc;
        }
    }
    acc
}

/// Range bounds computed by steps.
#[workflow]
pub async fn range_bounds_from_steps(x: i64) -> Vec<i64> {
    let mut out = vec![];
    for i in inc(x).await..double(x.rem_euclid(4) + 2).await + x {
        out.push(inc(i).await);
    }
    out
}

// ----- diverging bodies (issue 18) ----------------------------------------------------

/// A tail expression that diverges: a `loop` that only returns.
#[workflow]
pub async fn diverging_tail(x: i64) -> Result<i64, String> {
    let mut n = x;
    loop {
        n = inc(n).await;
        if n > x + 2 {
            return Ok(n);
        }
    }
}

/// Bodies that only panic compile (never run by the tests).
#[workflow]
pub async fn only_todo(_x: i64) -> String {
    todo!()
}

#[workflow]
pub async fn step_then_panic(x: i64) -> String {
    let v = inc(x).await;
    panic!("not written yet: {v}")
}

/// `vec![elem; n]` with a step (and `?`) in the element.
#[workflow]
pub async fn vec_repeat_step(x: i64) -> Result<Vec<i64>, String> {
    let n = x.rem_euclid(4) as usize;
    let v = vec![checked(x.abs()).await?; n];
    let w = vec![inc(x).await; 2];
    Ok([v, w].concat())
}

/// `for` over borrowed collections: a borrow dead at the step is no borrow across it.
#[workflow]
pub async fn for_over_borrows(x: i64) -> (i64, Vec<i64>) {
    let xs = vec![x, x + 1, x + 2];
    let mut total = 0;
    for v in &xs {
        total += inc(*v).await;
    }
    'outer: for v in xs.iter() {
        if *v == x {
            continue 'outer;
        }
        total += double(*v).await;
        if total > 1000 {
            break;
        }
    }
    let m: std::collections::BTreeMap<i64, i64> = xs.iter().map(|v| (*v, v * 10)).collect();
    for (k, v) in &m {
        total += add(*k, *v).await;
    }
    for v in m.values() {
        total += inc(*v).await;
    }
    // Items read again after a step, and written through `&mut`.
    for id in &xs {
        total += inc(*id).await;
        total += *id;
    }
    let mut ys = xs.clone();
    for y in &mut ys {
        *y = double(*y).await;
    }
    for (i, y) in ys.iter().enumerate().rev().skip(1) {
        total += add(i as i64, *y).await;
    }
    (total, ys)
}

fn fold_vec(v: Vec<i64>) -> i64 {
    v.iter().sum()
}

/// A step among `vec!` elements passed to a function.
#[workflow]
pub async fn vec_list_step(x: i64) -> Result<i64, String> {
    let (a, c) = (x, x * 3);
    Ok(fold_vec(vec![a, checked(x.abs()).await?, c]))
}

/// Matching a borrow of a local (`&name`, `prices.get(&k)`, `v.first()`) with steps in
/// the arm: the bindings are matched again after the step instead of held across it.
#[workflow]
pub async fn borrowed_scrutinees(x: i64) -> (i64, String) {
    let prices = std::collections::BTreeMap::from([(0, 5i64), (1, x)]);
    let mut total = 0;
    let k = x.rem_euclid(3);
    if let Some(p) = prices.get(&k) {
        total += inc(*p).await;
        total += *p;
    }
    let name = if x > 0 { Some(format!("n{x}")) } else { None };
    let greeting = match &name {
        Some(n) => greet(n.clone()).await + n,
        None => "nobody".to_string(),
    };
    let v = vec![x, 2];
    match v.first() {
        Some(f) if *f > 0 => {
            total += double(*f).await;
        }
        _ => {}
    }
    (total, greeting)
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bag {
    pub id: i64,
    pub items: Vec<i64>,
    pub name: String,
}

/// A `for` loop over a field of a local, and the rest of the local used after it.
#[workflow]
pub async fn partial_move_then_rest(x: i64) -> (Vec<i64>, i64, String) {
    let bag = Bag {
        id: x,
        items: vec![x, x + 1],
        name: format!("b{x}"),
    };
    let mut trace = Vec::new();
    for item in bag.items {
        trace.push(inc(item).await);
    }
    trace.push(bag.id);
    let other = Bag {
        id: 1,
        items: vec![2, 3],
        name: "o".into(),
    };
    for item in other.items {
        trace.push(double(item).await);
    }
    (trace, bag.id, bag.name)
}

/// Generator findings 8-10: a struct literal's field named like a moved local; a block's
/// function hiding the same function of an enclosing block; a lookup with a computed key
/// matched with a step in the arm.
#[workflow]
pub async fn generator_findings_8_to_10(x: i64) -> (String, Vec<i64>, i64) {
    let name = format!("n{x}");
    let g = greet(name).await;
    let bag = Bag {
        id: inc(x).await,
        items: vec![],
        name: format!("m{x}"),
    };
    let mut trace = Vec::new();
    {
        fn tweak(v: i64) -> i64 {
            v + 42
        }
        trace.push(tweak(x));
        {
            fn tweak(v: i64) -> i64 {
                v + 76
            }
            trace.push(tweak(inc(x).await));
        }
        trace.push(tweak(double(x).await));
    }
    let prices = std::collections::BTreeMap::from([(0, 5i64), (1, x)]);
    let mut total = bag.id;
    if let Some(p) = prices.get(&x.rem_euclid(3)) {
        total += inc(*p).await;
    }
    match prices.get(&x.rem_euclid(3)) {
        Some(p) => trace.push(inc(*p).await),
        None => trace.push(-3),
    }
    (g + &bag.name, trace, total)
}

/// `while let` on a lookup of a local, with a step in the body.
#[workflow]
pub async fn while_let_on_a_borrow(x: i64) -> (Vec<i64>, i64) {
    let mut stack = vec![x, x + 1, x + 2];
    let mut total = 0;
    while let Some(top) = stack.last() {
        total += inc(*top).await;
        total += *top;
        stack.pop();
    }
    (stack, total)
}

/// Generator findings 11-12: a `#[cfg]`'d-out step that reads a local no other code
/// reads; two `#[cfg]`'d-out `let`s of the same name.
#[workflow]
pub async fn generator_findings_11_12(x: i64) -> Result<(Vec<i64>, i64), String> {
    let mut trace: Vec<i64> = Vec::new();
    let k = inc(x).await;
    #[allow(unused_variables)]
    let seen = x + 1;
    #[cfg(any())]
    trace.push(checked(seen).await?);
    #[cfg(any())]
    let n = checked(x).await?;
    #[cfg(any())]
    let n = checked(x + 1).await?;
    trace.push(k);
    Ok((trace, inc(x).await))
}

/// Generator findings 13-14: an inclusive range (huge, with an early exit, and ending
/// exactly after a step); a lint attribute on a `let` that shadows a live local.
#[workflow]
pub async fn generator_findings_13_14(x: i64) -> (Vec<i64>, i64) {
    let mut trace = Vec::new();
    for i in 0..=1i64 << 40 {
        if i >= 2 {
            break;
        }
        trace.push(inc(i).await);
    }
    for i in x..=x + 2 {
        trace.push(double(i).await);
    }
    let mut y = x;
    let a = inc(y).await;
    {
        #[rustfmt::skip] let a = a;
        y = double(a).await;
    }
    (trace, y)
}

/// A `#[cfg]`'d `let` with a step shadowing a loop's own binding (compiled out here).
#[workflow]
pub async fn cfg_let_shadows_loop_item(x: i64) -> Vec<i64> {
    let mut out = Vec::new();
    for v in vec![x, x + 1] {
        #[cfg(any())]
        let v = double(v).await;
        out.push(inc(v).await);
    }
    out
}

/// Issue 10: a `#[cfg(all())] let` read only by a `#[cfg(any())]` statement with a step
/// (its frame slot would have no type), and a local of a `#[cfg(all())]` block read only
/// by a `#[cfg(any())]` block with a step in it (never-type fallback).
#[workflow]
pub async fn cfg_in_let_read_only_by_cfg_out_step(x: i64) -> Result<Vec<i64>, String> {
    let mut trace = Vec::new();
    #[cfg(all())]
    #[allow(unused_variables)]
    let a = 5;
    #[cfg(any())]
    {
        trace.push(checked(x).await?);
        trace.push(a);
    }
    #[cfg(all())]
    {
        #[allow(unused_variables)]
        let acc: Vec<i64> = vec![x];
        #[cfg(any())]
        {
            trace.push(inc(x).await);
            trace.push(acc.len() as i64);
        }
    }
    trace.push(checked(x + 1).await?);
    Ok(trace)
}

/// Issue 10: a lookup whose key has a step, matched with a step in the arm
/// (`m.get(&num(x).await?)`), in `if let`, `match` and `while let`.
#[workflow]
pub async fn lookup_key_with_step(x: i64) -> Result<(i64, Vec<i64>), String> {
    let prices = std::collections::BTreeMap::from([(0i64, 5i64), (1, x), (2, -x)]);
    let mut total = 0;
    if let Some(p) = prices.get(&checked(x.rem_euclid(3)).await?) {
        total += inc(*p).await;
        total += *p;
    }
    let mut seen = Vec::new();
    match prices.get(&inc(x).await.rem_euclid(4)) {
        Some(p) if *p > 0 => seen.push(double(*p).await + *p),
        Some(p) => seen.push(*p),
        None => seen.push(inc(-1).await),
    }
    let mut k = 0;
    while let Some(p) = prices.get(&add(k, 0).await) {
        seen.push(inc(*p).await - *p);
        k += 1;
    }
    Ok((total, seen))
}

/// Issue 10: adapters over ranges in a `for` with steps are journaled as the bounds, the
/// adapters' arguments and a position, never collected (a huge range left early), and
/// the arguments are evaluated once, before the loop, even when the body changes them.
#[workflow]
pub async fn range_adapters_lazily(x: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut k = (x.rem_euclid(3) + 1) as usize;
    for i in (x..1i64 << 40).step_by(k) {
        k += 1;
        out.push(inc(i).await);
        if out.len() >= 3 {
            break;
        }
    }
    out.push(k as i64);
    for i in (0..=1i64 << 41).rev().step_by(1 << 20).skip(1) {
        out.push(double(i >> 20).await);
        if out.len() >= 6 {
            break;
        }
    }
    let mut n = 4;
    for (j, i) in (x..x + n).rev().enumerate().take(3) {
        n -= 1;
        out.push(add(i, j as i64).await + n);
    }
    for i in (inc(x).await..=double(x.rem_euclid(4)).await + x + 1).step_by(2) {
        out.push(inc(i).await);
    }
    let xs = vec![x, x + 1, x + 2, x + 3];
    let mut stride = 2;
    for v in xs.iter().step_by(stride) {
        stride += 5;
        out.push(inc(*v).await + stride as i64);
    }
    out
}

/// Generator-style findings (issue 10, item 5): a `match` whose scrutinee borrows and
/// steps, with arms that bind but do not step; a borrowed sub-slice left of a step in
/// `format!`; an index local changed by a later operand.
#[workflow]
pub async fn borrows_around_a_step_in_one_expression(
    x: i64,
) -> Result<(i64, String, Vec<i64>), String> {
    let a = vec![x, 1];
    let t = match (&a, checked(x).await?) {
        (a, n) if n > 3 => a.len() as i64 + n,
        (a, n) => a[0] - n,
    };
    let s = format!("ab{x}");
    let n = 2;
    let u = format!("{}-{}", &s[..n], inc(t).await);
    let v = vec![x, x + 1, x + 2];
    let mut i = 0;
    let w = vec![
        v[i],
        {
            i += 1;
            inc(v[i]).await
        },
        v[i],
    ];
    let z = if let (Some(first), k) = (a.first(), double(x).await) {
        *first + k
    } else {
        0
    };
    Ok((t + z, u, w))
}

/// A binding of a match arm (and of `if let`, a closure, a `for` pattern) hides a local
/// of the same name that was moved before: the moved local is not live after its move.
#[workflow]
pub async fn pattern_binding_hides_a_moved_local(x: i64) -> Result<i64, String> {
    let (a, b) = flow::join!(checked(x), checked(x + 1)).await;
    a?;
    b?;
    let r = match checked(x + 2).await {
        Ok(a) => a,
        Err(_) => inc(x).await,
    };
    let s = if let Ok(b) = checked(r).await {
        b
    } else {
        double(r).await
    };
    let c = vec![s];
    let t: i64 = c.iter().map(|a| a + 1).sum();
    Ok(t + inc(s).await)
}

/// Audit finding: a type, an enum and a `static` declared in a block with a step and used
/// only inside that block (they were refused as if their names were used outside it).
#[workflow]
pub async fn block_scoped_types_used_in_their_block(x: i64) -> (i64, i64) {
    let a = {
        #[derive(Debug)]
        struct Scaled(i64);
        static FACTOR: i64 = 3;
        let s = Scaled(inc(x).await * FACTOR);
        s.0 + FACTOR
    };
    let b = {
        enum Pick {
            Low,
            High,
        }
        let p = if double(x).await > 4 {
            Pick::High
        } else {
            Pick::Low
        };
        match p {
            Pick::Low => inc(a).await,
            Pick::High => a * 2,
        }
    };
    (a, b)
}

/// Audit finding (the README's `publish` example): a local moved by `?` before a step, and
/// after the step a match arm, a closure and an `if let` binding the same name: those are
/// their own bindings, not the moved local (it was kept alive across the step: E0382).
#[workflow]
pub async fn bindings_named_like_a_moved_local(x: i64) -> Result<i64, String> {
    let a: Result<i64, String> = Ok(inc(x).await);
    let first = a?;
    let second = inc(first).await;
    let r: Result<i64, String> = if second > 3 {
        Ok(second)
    } else {
        Err("small".into())
    };
    let v = match r {
        Ok(a) => a + 1,
        Err(e) => e.len() as i64,
    };
    let w = [v, 2].iter().map(|a| a * 2).sum::<i64>();
    let u = if let Some(a) = Some(w) { a - 1 } else { 0 };
    Ok(v + w + u + double(v).await)
}

/// More bindings named like a local moved before a step: a `while let`, a closure's tuple
/// pattern, and a `let` inside a block after the move.
#[workflow]
pub async fn moved_local_rebound_in_while_let_and_tuples(x: i64) -> Result<i64, String> {
    let a: Result<i64, String> = Ok(inc(x).await);
    let base = a?;
    let mut items = vec![base, base + 1];
    let mut total = 0;
    while let Some(a) = items.pop() {
        total += inc(a).await;
    }
    let pairs = vec![(total, 1), (2, 3)];
    let t: i64 = pairs.iter().map(|(a, b)| a * b).sum();
    let u = {
        let a = double(t).await;
        a + 1
    };
    Ok(u + inc(total).await)
}
