//! Log lines that reach the host's log (shown with `-v`, kept in the log file). Never log a key,
//! and keep bodies out: they can carry images or prompts the user considers private.

use crate::bindings::imageai::provider::host::{self, LogLevel};

pub fn error(message: &str) {
    host::log(LogLevel::Error, message);
}

pub fn warn(message: &str) {
    host::log(LogLevel::Warn, message);
}

pub fn info(message: &str) {
    host::log(LogLevel::Info, message);
}

pub fn debug(message: &str) {
    host::log(LogLevel::Debug, message);
}

pub fn trace(message: &str) {
    host::log(LogLevel::Trace, message);
}
