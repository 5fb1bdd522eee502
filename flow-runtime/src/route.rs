//! Routing keys: a stable number per run, and the run's number read back from the tokens
//! it hands out, so that a store split into shards can send a request (a signal, a
//! cancellation, a callback's completion, a worker's report) to the shard that holds
//! the run without looking the run up.
//!
//! # Stability
//! The key is FNV-1a (64 bits) of the UTF-8 bytes of the run's *root* ID: the part of
//! the run ID before its first `/`. Child runs are named `{parent}/{step}` or
//! `{parent}/{step}.{branch}`, so a whole tree of runs has its root's key and lives in
//! one shard. This format is part of flow's API: it never changes between versions, as
//! stores persist shard assignments computed from it. (A user's run ID that itself
//! contains `/` routes by its part before the first `/`, like a child.)

/// FNV-1a's 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a's 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The routing key of run `run_id`: FNV-1a 64 of its root ID (the part before the first
/// `/`), so a child run routes with its root. Stable across versions (see the module
/// documentation of the format).
///
/// ```
/// use flow_runtime::route_key;
///
/// assert_eq!(route_key("order-42"), route_key("order-42/3.1"));
/// let shard = route_key("order-42") % 16;
/// # assert!(shard < 16);
/// ```
pub fn route_key(run_id: &str) -> u64 {
    let root = run_id.split('/').next().unwrap_or(run_id);
    root.bytes().fold(FNV_OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// The routing key of the run that issued callback token `token` (as
/// [`Engine::complete`](crate::Engine::complete) and
/// [`Engine::heartbeat`](crate::Engine::heartbeat) take it): its [`route_key`], which
/// tokens carry since this version. `None` for a token of the older format (issued before
/// tokens carried it), or a string that is no callback token: such a token is still
/// accepted by the engine that holds its run, whoever has to find it.
///
/// Read from the token's text alone: a token that routes is not thereby a valid one.
pub fn token_route(token: &str) -> Option<u64> {
    crate::callback::token_route(token)
}

/// The routing key of the run a remote-task token (a [`LeasedTask`](crate::LeasedTask)'s
/// token, as workers report with) was issued for: the [`route_key`] of the run ID its
/// claims hold. `None` for a string that is not laid out as a task token.
///
/// The token's seal is not checked (only the journal's key can): routing only. The
/// engine that holds the run checks it when the report arrives.
pub fn task_token_route(token: &str) -> Option<u64> {
    crate::engine::task_token_run(token).map(|run| route_key(&run))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values are pinned: stores persist what they computed from them.
    #[test]
    fn route_keys_are_pinned() {
        // FNV-1a 64's published test vectors.
        assert_eq!(route_key(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(route_key("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(route_key("foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(route_key("order-42"), 0x7d1d_eb86_a056_62d4);
        // Children route with their root.
        assert_eq!(route_key("foobar/3"), route_key("foobar"));
        assert_eq!(route_key("foobar/3.1/2"), route_key("foobar"));
        assert_eq!(route_key("order-42/7.1"), 0x7d1d_eb86_a056_62d4);
        assert_ne!(route_key("foobar2"), route_key("foobar"));
    }
}
