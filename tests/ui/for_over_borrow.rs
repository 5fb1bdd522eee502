use flow::{task, workflow};

#[task]
async fn fetch(id: u32) -> u32 {
    id
}

#[workflow]
async fn wf(ids: Vec<u32>) -> u32 {
    let mut total = 0;
    for id in &ids[1..] {
        total += fetch(*id).await;
    }
    total
}

fn main() {}
