//! Tests of the mail servers surface.
