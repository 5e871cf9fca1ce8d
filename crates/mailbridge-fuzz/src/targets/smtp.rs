//! Fuzz targets for the smtp parsers.

use crate::Target;

/// This area's targets.
pub const TARGETS: &[Target] = &[];
