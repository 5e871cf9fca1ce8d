//! Fuzz targets for the mailbox parsers.

use crate::Target;

/// This area's targets.
pub const TARGETS: &[Target] = &[];
