//! Tests of the identity surface.
