#[task(retry(max_attempts = 5, initial = "200ms", backoff = 2.0, non_retryable = is_declined), timeout = "30s")]
async fn charge(card: String, cents: u64) -> Result<String, PaymentError> {
    gateway::charge(&card, cents).await
}
