//! One redaction layer for every writer of text (see `vane_core::redact`).
pub use vane_core::redact::*;
