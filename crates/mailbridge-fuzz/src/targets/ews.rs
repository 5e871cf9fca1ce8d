//! Fuzz targets for the ews parsers.

use crate::Target;

/// This area's targets.
pub const TARGETS: &[Target] = &[];
