//! Tests of the ews surface.
