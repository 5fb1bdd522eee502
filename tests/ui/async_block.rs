use flow::{task, workflow};

#[task]
async fn fetch(id: u32) -> u32 {
    id
}

#[workflow]
async fn wf(id: u32) -> u32 {
    let fut = async move { fetch(id).await };
    fut.await
}

fn main() {}
