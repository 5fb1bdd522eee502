use flow::{task, workflow};

#[task]
async fn fetch(id: u32) -> String {
    format!("item {id}")
}

#[workflow]
async fn wf(ids: Vec<u32>, long: bool) -> String {
    let sep = if long { "; " } else { ", " };
    let mut out = String::new();
    for id in ids {
        out.push_str(&fetch(id).await);
        out.push_str(sep);
    }
    out
}

fn main() {}
