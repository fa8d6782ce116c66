//! Tests of job files.
