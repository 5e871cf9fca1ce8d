//! Fuzz targets for the graph parsers.

use crate::Target;

/// This area's targets.
pub const TARGETS: &[Target] = &[];
