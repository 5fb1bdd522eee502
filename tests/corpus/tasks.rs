//! Small deterministic tasks the corpus workflows call.

use flow::task;
use serde::{Deserialize, Serialize};

#[task]
pub async fn inc(x: i64) -> i64 {
    x + 1
}

#[task]
pub async fn double(x: i64) -> i64 {
    x * 2
}

#[task]
pub async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[task]
pub async fn is_even(x: i64) -> bool {
    x % 2 == 0
}

/// Fails for negative numbers and multiples of 7.
#[task(retry(max_attempts = 1))]
pub async fn checked(x: i64) -> Result<i64, String> {
    if x < 0 {
        Err(format!("{x} is negative"))
    } else if x % 7 == 0 && x != 0 {
        Err(format!("{x} is a multiple of 7"))
    } else {
        Ok(x)
    }
}

#[task]
pub async fn label(x: i64) -> String {
    format!("#{x}")
}

#[task]
pub async fn maybe_half(x: i64) -> Option<i64> {
    (x % 2 == 0).then_some(x / 2)
}

#[task]
pub async fn split(x: i64) -> (i64, i64) {
    (x / 3, x % 3)
}

#[task]
pub async fn range_of(n: i64) -> Vec<i64> {
    (0..n.clamp(0, 20)).collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Shape {
    Circle(i64),
    Rect { w: i64, h: i64 },
    Empty,
}

#[task]
pub async fn shape_of(x: i64) -> Shape {
    match x.rem_euclid(3) {
        0 => Shape::Circle(x),
        1 => Shape::Rect { w: x, h: x + 1 },
        _ => Shape::Empty,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub balance: i64,
    pub history: Vec<i64>,
}

#[task]
pub async fn deposit(mut account: Account, amount: i64) -> Account {
    account.balance += amount;
    account.history.push(amount);
    account
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum CorpusError {
    #[error("check failed: {0}")]
    Check(String),
    #[error("engine: {0}")]
    Engine(String),
}

impl From<String> for CorpusError {
    fn from(s: String) -> Self {
        CorpusError::Check(s)
    }
}

impl From<flow::TaskFailure> for CorpusError {
    fn from(f: flow::TaskFailure) -> Self {
        CorpusError::Engine(f.to_string())
    }
}

#[task]
pub async fn greet(name: String) -> String {
    format!("hello {name}")
}

#[task]
pub async fn append(mut list: Vec<i64>, x: i64) -> Result<Vec<i64>, String> {
    list.push(x);
    Ok(list)
}
