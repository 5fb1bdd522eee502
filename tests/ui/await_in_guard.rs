use flow::{task, workflow};

#[task]
async fn check(id: u32) -> bool {
    id > 3
}

#[workflow]
async fn wf(id: Option<u32>) -> u32 {
    match id {
        Some(n) if check(n).await => n,
        _ => 0,
    }
}

fn main() {}
