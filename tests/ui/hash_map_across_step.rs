// A `HashMap` kept across a step warns at its `let` (denied here so the warning shows in
// the expected output); a `BTreeMap`, or a `HashMap` that ends before the step, does not.
#![deny(deprecated)]

use flow::{task, workflow};
use std::collections::{BTreeMap, HashMap};

#[task]
async fn price(sku: String) -> u64 {
    sku.len() as u64
}

#[workflow]
async fn wf(skus: Vec<String>) -> Vec<(String, u64)> {
    let mut prices = HashMap::new();
    let mut sorted = BTreeMap::new();
    for sku in skus.clone() {
        let p = price(sku.clone()).await;
        prices.insert(sku.clone(), p);
        sorted.insert(sku, p);
    }
    let counted: HashMap<u64, usize> = prices.values().map(|&p| (p, 1)).collect();
    let n = counted.len() as u64;
    let last = price(n.to_string()).await;
    let mut out: Vec<(String, u64)> = prices.into_iter().collect();
    out.extend(sorted);
    out.push(("last".to_string(), last));
    out
}

// `#[allow(deprecated)]` on the workflow silences it.
#[workflow]
#[allow(deprecated)]
async fn allowed(skus: Vec<String>) -> usize {
    let mut prices = HashMap::new();
    for sku in skus {
        let p = price(sku.clone()).await;
        prices.insert(sku, p);
    }
    prices.len()
}

fn main() {}
