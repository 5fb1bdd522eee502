use flow::{task, workflow};

#[task]
async fn fetch(id: u32) -> u32 {
    id
}

fn sorted(mut ids: Vec<u32>) -> Vec<u32> {
    ids.sort();
    ids
}

#[workflow]
async fn wf(ids: Vec<u32>) -> u32 {
    let mut total = 0;
    for id in &sorted(ids) {
        total += fetch(*id).await;
    }
    total
}

fn main() {}
