//! The signals a workflow waits for, as `#[workflow]` found them in its body, and the
//! check [`Engine::signal`](crate::Engine::signal) makes with them before a signal is
//! stored: a payload that does not fit the awaited type, or a name the workflow never
//! waits for, is refused at send instead of faulting the run later.
//!
//! The macro sees `flow::signal::<T>("name")` call sites in the workflow's body (also
//! inside `select!` and `join!`). A site whose type is inferred (`flow::signal("name")`)
//! gives a name without a type; a site whose name is not a string literal makes the set
//! of names open. A signal wait built outside the body (in a helper function) is not
//! seen: a workflow that awaits one and also has call sites of its own would have its
//! helper's signal refused, so such a workflow should spell its waits out in the body.

use serde::de::DeserializeOwned;

use crate::codec::{self, CodecError};
use crate::error::FlowError;

/// The awaited type of a signal call site.
#[derive(Debug, Clone, Copy)]
pub struct SignalType {
    /// The type's name (`std::any::type_name`).
    pub name: fn() -> &'static str,
    /// Whether an encoded payload decodes as the type.
    pub fits: fn(&[u8]) -> Result<(), CodecError>,
}

impl SignalType {
    /// The awaited type `T`.
    pub const fn of<T: DeserializeOwned>() -> Self {
        SignalType {
            name: std::any::type_name::<T>,
            fits: fits::<T>,
        }
    }
}

/// One `flow::signal(..)` call site of a workflow body.
#[derive(Debug, Clone, Copy)]
pub struct SignalSite {
    /// The signal's name.
    pub name: &'static str,
    /// The awaited type, when the call spells it out (`flow::signal::<T>`).
    pub ty: Option<SignalType>,
}

/// The signal call sites of a workflow body ([`Workflow::signals`](crate::Workflow::signals)).
#[derive(Debug, Clone, Copy)]
pub struct SignalSites {
    /// True when every call site names its signal with a string literal and there is at
    /// least one: `sites` then hold every name the workflow waits for.
    pub closed: bool,
    /// The call sites, in source order.
    pub sites: &'static [SignalSite],
}

impl SignalSites {
    /// Nothing known: every signal is accepted (hand-written `Workflow` impls).
    pub const UNKNOWN: SignalSites = SignalSites {
        closed: false,
        sites: &[],
    };
}

/// Whether `bytes` decode as a `T` (what [`SignalType::fits`] points at).
fn fits<T: DeserializeOwned>(bytes: &[u8]) -> Result<(), CodecError> {
    codec::decode::<T>(bytes, || std::any::type_name::<T>().to_string()).map(drop)
}

/// Refuses signal `name` with `payload` (encoded from a `sent`) to run `run_id` of
/// `workflow` if the workflow never waits for that name or awaits it as types the
/// payload does not fit.
pub(crate) fn check(
    sites: &SignalSites,
    workflow: &str,
    run_id: &str,
    name: &str,
    payload: &[u8],
    sent: &str,
) -> Result<(), FlowError> {
    let named: Vec<&SignalSite> = sites.sites.iter().filter(|s| s.name == name).collect();
    if named.is_empty() {
        if !sites.closed {
            return Ok(());
        }
        let mut known: Vec<&str> = sites.sites.iter().map(|s| s.name).collect();
        known.dedup();
        return Err(FlowError::UnknownSignal {
            run_id: run_id.to_string(),
            workflow: workflow.to_string(),
            signal: name.to_string(),
            known: known.join("`, `"),
        });
    }
    // A site of unknown type may accept anything; otherwise one awaited type must fit.
    if named.iter().any(|s| s.ty.is_none()) {
        return Ok(());
    }
    let mut reasons = Vec::new();
    for ty in named.iter().filter_map(|s| s.ty) {
        match (ty.fits)(payload) {
            Ok(()) => return Ok(()),
            Err(CodecError::Decode { message, .. }) => {
                reasons.push(format!("`{}`: {message}", (ty.name)()))
            }
            Err(other) => reasons.push(format!("`{}`: {other}", (ty.name)())),
        }
    }
    reasons.dedup();
    Err(FlowError::SignalTypeMismatch {
        run_id: run_id.to_string(),
        signal: name.to_string(),
        sent: sent.to_string(),
        expected: reasons.join("; "),
    })
}
