use flow::{task, workflow};

#[task]
async fn fetch(id: u32) -> u32 {
    id
}

#[workflow]
async fn wf(limit: u32) -> u32 {
    for i in 0.. {
        if fetch(i).await > limit {
            return i;
        }
    }
    0
}

#[workflow]
async fn with_adapters(limit: u32) -> u32 {
    for i in (1..).step_by(2) {
        if fetch(i).await > limit {
            return i;
        }
    }
    0
}

fn main() {}
