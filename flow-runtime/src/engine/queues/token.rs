//! Task tokens: what a lease's token says (its [`Claims`]) and the seal that makes it
//! unforgeable without the journal.
//!
//! A token is its claims (run, step, branch, attempt number, the engine's boot number,
//! the lease's number) followed by a 128-bit tag, HMAC-SHA-256 under the journal's
//! 256-bit worker key (`store/worker_key.rs`) truncated to its first half, all in hex. It
//! is checked without a table, so an engine still knows the tokens an earlier engine on
//! the same journal issued, and nobody without the journal can make one.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::FlowError;

/// The first byte of every token: the layout below. Another value is refused.
const VERSION: u8 = 1;
/// The fixed part of a token's body: version, step, branch, attempt, boot, lease.
const FIXED: usize = 1 + 8 + 4 + 4 + 8 + 8;
/// The seal's length in bytes.
const TAG: usize = 16;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Which attempt slot: a branch of a run's step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Slot {
    pub run: String,
    pub step: u64,
    pub branch: u32,
}

/// What a token says (once its seal checked out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Claims {
    pub slot: Slot,
    pub attempt: u32,
    pub boot: u64,
    pub lease: u64,
}

/// The journal's worker key, ready to seal and open tokens.
pub(super) struct TokenKey {
    mac: Hmac<Sha256>,
}

impl TokenKey {
    pub(super) fn new(key: &[u8; 32]) -> Self {
        TokenKey {
            mac: <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                .expect("HMAC takes a key of any length"),
        }
    }

    /// The token of `claims`: their bytes, then the seal, in hex.
    pub(super) fn seal(&self, claims: &Claims) -> String {
        let mut bytes = Vec::with_capacity(FIXED + claims.slot.run.len() + TAG);
        bytes.push(VERSION);
        bytes.extend_from_slice(&claims.slot.step.to_le_bytes());
        bytes.extend_from_slice(&claims.slot.branch.to_le_bytes());
        bytes.extend_from_slice(&claims.attempt.to_le_bytes());
        bytes.extend_from_slice(&claims.boot.to_le_bytes());
        bytes.extend_from_slice(&claims.lease.to_le_bytes());
        bytes.extend_from_slice(claims.slot.run.as_bytes());
        let tag = self.mac().chain_update(&bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG]);
        let mut token = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            token.push(char::from(HEX[usize::from(b >> 4)]));
            token.push(char::from(HEX[usize::from(b & 15)]));
        }
        token
    }

    /// The claims of `token`, if this key sealed it; refused with the reason otherwise.
    pub(super) fn open(&self, token: &str, max_run_id: usize) -> Result<Claims, FlowError> {
        let bytes = unsealed_bytes(token, max_run_id)?;
        let (body, tag) = bytes.split_at(bytes.len() - TAG);
        // `verify_truncated_left` compares in constant time: timing tells nothing of the seal.
        self.mac()
            .chain_update(body)
            .verify_truncated_left(tag)
            .map_err(|_| {
                invalid("its seal does not match: it was altered, or issued for another journal")
            })?;
        let word = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap_or([0; 8]));
        let half = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().unwrap_or([0; 4]));
        Ok(Claims {
            slot: Slot {
                run: run_of(body)?,
                step: word(1),
                branch: half(9),
            },
            attempt: half(13),
            boot: word(17),
            lease: word(25),
        })
    }

    /// A keyed digest of a report's parts (each length-prefixed), to tell a repeated
    /// report from a different one through the same token.
    pub(super) fn digest(&self, parts: &[&[u8]]) -> u64 {
        let mut mac = self.mac();
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        let out = mac.finalize().into_bytes();
        u64::from_le_bytes(out[..8].try_into().unwrap_or([0; 8]))
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.mac.clone()
    }
}

fn invalid(reason: &str) -> FlowError {
    FlowError::InvalidTaskToken {
        reason: reason.to_string(),
    }
}

/// The bytes of `token` (claims, then seal) if it is laid out as a token of this
/// version, its seal unchecked.
fn unsealed_bytes(token: &str, max_run_id: usize) -> Result<Vec<u8>, FlowError> {
    if !token.len().is_multiple_of(2) || token.len() > 2 * (FIXED + max_run_id + TAG) {
        return Err(invalid("it is not a task token (wrong length)"));
    }
    let mut bytes = Vec::with_capacity(token.len() / 2);
    for pair in token.as_bytes().chunks(2) {
        let digit = |c: u8| (c as char).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => bytes.push((hi * 16 + lo) as u8),
            _ => return Err(invalid("it is not a task token (not hexadecimal)")),
        }
    }
    if bytes.len() < FIXED + TAG || bytes[0] != VERSION {
        return Err(invalid(
            "it is not a task token (too short, or an unknown version)",
        ));
    }
    Ok(bytes)
}

/// The run ID of a token's claims (`body`: the token's bytes before the seal).
fn run_of(body: &[u8]) -> Result<String, FlowError> {
    String::from_utf8(body[FIXED..].to_vec()).map_err(|_| invalid("its run ID is not UTF-8"))
}

/// The run ID `token`'s claims name, read without checking the seal: for routing a
/// report to the engine that holds the run (which checks the seal), never for trusting
/// it. `None` if the token is not laid out as a task token.
pub(crate) fn claimed_run(token: &str, max_run_id: usize) -> Option<String> {
    let bytes = unsealed_bytes(token, max_run_id).ok()?;
    run_of(&bytes[..bytes.len() - TAG]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_RUN_ID: usize = 512;

    fn claims() -> Claims {
        Claims {
            slot: Slot {
                run: "order-1".to_string(),
                step: 3,
                branch: 2,
            },
            attempt: 4,
            boot: 5,
            lease: 6,
        }
    }

    #[test]
    fn a_token_opens_to_its_claims_under_the_same_key_only() {
        let key = TokenKey::new(&[7; 32]);
        let token = key.seal(&claims());
        assert_eq!(key.open(&token, MAX_RUN_ID).unwrap(), claims());
        // Another journal's key: refused.
        let other = TokenKey::new(&[8; 32]);
        assert!(matches!(
            other.open(&token, MAX_RUN_ID),
            Err(FlowError::InvalidTaskToken { .. })
        ));
        // One changed digit anywhere: refused.
        for at in [0, 10, token.len() / 2, token.len() - 1] {
            let mut bytes = token.clone().into_bytes();
            bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
            let altered = String::from_utf8(bytes).unwrap();
            assert!(
                key.open(&altered, MAX_RUN_ID).is_err(),
                "digit {at} altered"
            );
        }
        for garbage in ["", "xyz", "00", &token[..token.len() - 2]] {
            assert!(key.open(garbage, MAX_RUN_ID).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn the_claimed_run_is_read_without_the_key() {
        let token = TokenKey::new(&[7; 32]).seal(&claims());
        assert_eq!(claimed_run(&token, MAX_RUN_ID).as_deref(), Some("order-1"));
        // Routing does not check the seal: a token of another journal still names its run.
        let other = TokenKey::new(&[8; 32]).seal(&claims());
        assert_eq!(claimed_run(&other, MAX_RUN_ID).as_deref(), Some("order-1"));
        for garbage in ["", "xyz", "00", "flowcb_00"] {
            assert_eq!(claimed_run(garbage, MAX_RUN_ID), None, "{garbage:?}");
            assert_eq!(crate::route::task_token_route(garbage), None);
        }
        // A child run's token routes with its root.
        let mut child = claims();
        child.slot.run = "order-1/4.2".to_string();
        let token = TokenKey::new(&[7; 32]).seal(&child);
        assert_eq!(
            crate::route::task_token_route(&token),
            Some(crate::route::route_key("order-1"))
        );
    }

    #[test]
    fn digests_tell_reports_apart() {
        let key = TokenKey::new(&[7; 32]);
        assert_eq!(key.digest(&[b"ok", b"1"]), key.digest(&[b"ok", b"1"]));
        assert_ne!(key.digest(&[b"ok", b"1"]), key.digest(&[b"ok", b"2"]));
        // Length prefixes: moving bytes between parts changes the digest.
        assert_ne!(key.digest(&[b"ok1", b""]), key.digest(&[b"ok", b"1"]));
    }
}
