//! kvmx-ci's tests of the real binary, by topic.

mod gitlab;
