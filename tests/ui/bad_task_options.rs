use flow::task;

#[task(retry(max_attempts = 0, backoff = 0.5, jitter = 2.0), timeout = 30, color = "red")]
async fn charge(cents: u64) -> Result<u64, String> {
    Ok(cents)
}

#[task(retry(non_retryable = is_fatal))]
async fn plain(cents: u64) -> u64 {
    cents
}

fn main() {}
