//! Tests of the graph surface.
