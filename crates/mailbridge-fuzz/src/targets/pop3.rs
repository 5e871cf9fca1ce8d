//! Fuzz targets for the pop3 parsers.

use crate::Target;

/// This area's targets.
pub const TARGETS: &[Target] = &[];
