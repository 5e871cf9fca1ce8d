//! Fuzz targets for the auth parsers.

use crate::Target;

/// This area's targets.
pub const TARGETS: &[Target] = &[];
