use flow::{task, workflow};

#[task]
async fn fetch(id: u32) -> u32 {
    id
}

#[workflow]
async fn wf(names: Vec<String>) -> usize {
    let first = &names[0];
    let n = fetch(1).await;
    first.len() + n as usize
}

fn main() {}
