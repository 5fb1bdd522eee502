use flow::{task, workflow};

#[task]
async fn fetch(id: u32) -> u32 {
    id
}

#[workflow]
async fn wf(ids: Vec<u32>) -> u32 {
    let total = ids.iter().map(|id| fetch(*id).await).sum::<u32>();
    total
}

fn main() {}
