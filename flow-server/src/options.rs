//! How a server is bound and guarded, and the checks it makes before it starts.

use std::net::SocketAddr;

/// Fewest bytes an API token may have: shorter ones could be guessed.
pub const MIN_TOKEN_BYTES: usize = 16;

/// Where a [`Server`](crate::Server) listens and who may call it.
#[derive(Clone)]
pub struct ServerOptions {
    /// The address to listen on (default `127.0.0.1:8080`; port 0 picks a free port).
    pub addr: SocketAddr,
    /// The API token callers must send as `Authorization: Bearer TOKEN`; `None` serves
    /// without one (refused off loopback unless [`allow_open`](Self::allow_open)).
    pub token: Option<String>,
    /// Serve without a token on an address other than loopback: anyone who reaches the
    /// address can start, signal and cancel runs.
    pub allow_open: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            allow_open: false,
        }
    }
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("allow_open", &self.allow_open)
            .finish()
    }
}

/// Why a server refused to start.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// No token on an address other than loopback.
    #[error(
        "refusing to serve on {addr} without an API token: anyone who reaches that address \
         could start, signal and cancel runs; set a token (flow_server::generate_token makes \
         one), bind 127.0.0.1, or allow running open explicitly"
    )]
    OpenOffLoopback {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// A token too short to be unguessable, or one that cannot travel in a header.
    #[error(
        "the API token is unusable: {reason}; use at least {MIN_TOKEN_BYTES} random \
         characters (flow_server::generate_token makes one)"
    )]
    WeakToken {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Binding the address failed.
    #[error("cannot listen on {addr}: {source}; pick a free port or another address")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
}

impl ServerOptions {
    /// Refuses options that would expose the engine: no token off loopback (unless
    /// allowed), or a weak token.
    pub fn check(&self) -> Result<(), OptionsError> {
        match &self.token {
            Some(token) if token.len() < MIN_TOKEN_BYTES => Err(OptionsError::WeakToken {
                reason: "it is too short",
            }),
            Some(token) if !token.bytes().all(|b| b.is_ascii_graphic()) => {
                Err(OptionsError::WeakToken {
                    reason: "it has a character that is not printable ASCII",
                })
            }
            Some(_) => Ok(()),
            None if self.addr.ip().is_loopback() || self.allow_open => Ok(()),
            None => Err(OptionsError::OpenOffLoopback { addr: self.addr }),
        }
    }
}

/// A new API token: 32 random bytes from the operating system, as 64 hex digits.
///
/// Fails only if the operating system's random source does.
pub fn generate_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        std::io::Error::other(format!("the operating system's random source failed: {e}"))
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
