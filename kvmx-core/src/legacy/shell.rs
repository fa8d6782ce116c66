//! Placeholder, replaced by the shell evaluator.
