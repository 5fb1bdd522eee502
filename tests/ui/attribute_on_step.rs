use flow::{task, workflow};

#[task]
async fn fetch(id: u32) -> u32 {
    id
}

#[workflow]
async fn wf(id: u32) -> u32 {
    #[cfg_attr(all(), must_use)]
    let a = fetch(id).await;
    #[doc = "a step"]
    let b = fetch(a).await;
    b
}

fn main() {}
