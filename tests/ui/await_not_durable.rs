use flow::workflow;

#[workflow]
async fn wf(ms: u64) -> u64 {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    ms
}

fn main() {}
