//! Fuzz targets for the imap parsers.

use crate::Target;

/// This area's targets.
pub const TARGETS: &[Target] = &[];
