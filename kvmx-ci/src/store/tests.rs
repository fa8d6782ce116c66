//! Tests of run folders.
