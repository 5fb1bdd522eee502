use flow::{task, workflow};

#[task]
async fn fetch(id: u32) -> u32 {
    id
}

struct Total(u32);

#[workflow]
async fn wf(id: u32) -> u32 {
    let first = Total(fetch(id).await);
    let second = {
        struct Total(u32);
        Total(fetch(id + 1).await).0
    };
    first.0 + second
}

fn main() {}
