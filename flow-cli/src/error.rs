//! What went wrong, and the exit code that tells scripts which kind of trouble it was.

use flow_runtime::FlowError;

/// Exit code: the command did what it was asked.
pub const EXIT_OK: i32 = 0;
/// Exit code: the operation was refused or failed (the server's or engine's message
/// says why), or the server or journal could not be reached.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: the command line is wrong (unknown option, missing argument, an `--input`
/// that is not JSON, a write command with `--journal`, no journal at the path).
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the run or workflow named does not exist.
pub const EXIT_NOT_FOUND: i32 = 3;

/// Exit code: interrupted by Ctrl-C (the shells' 128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;

/// A failed command: what to print on stderr and the exit code.
#[derive(Debug)]
pub struct CliError {
    /// One of the `EXIT_*` codes.
    pub code: i32,
    /// What went wrong and what to do.
    pub message: String,
}

impl CliError {
    /// A refused or failed operation (exit code 1).
    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_FAILED,
            message: message.into(),
        }
    }

    /// A wrong command line (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// The end of a command whose output nobody reads any more (stdout closed): exit
    /// code 0, nothing printed.
    pub fn quiet() -> Self {
        CliError {
            code: EXIT_OK,
            message: String::new(),
        }
    }

    /// Interrupted by Ctrl-C (exit code 130).
    pub fn interrupted() -> Self {
        CliError {
            code: EXIT_INTERRUPTED,
            message: "interrupted".into(),
        }
    }

    /// Something named that does not exist (exit code 3).
    pub fn not_found(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_NOT_FOUND,
            message: message.into(),
        }
    }
}

impl From<FlowError> for CliError {
    fn from(error: FlowError) -> Self {
        match &error {
            FlowError::UnknownRun { run_id } => CliError::not_found(format!(
                "no run `{run_id}` in this journal; check the run ID (`flow runs` lists them)"
            )),
            FlowError::UnknownWorkflow { .. } => CliError::not_found(error.to_string()),
            _ => CliError::failed(error.to_string()),
        }
    }
}
