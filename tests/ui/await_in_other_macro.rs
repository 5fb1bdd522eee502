use flow::{task, workflow};

#[task]
async fn check(id: u32) -> Option<u32> {
    Some(id)
}

#[workflow]
async fn wf(id: u32) -> bool {
    matches!(check(id).await, Some(3))
}

fn main() {}
