//! The static HTML report: an index of jobs with their history, and a page
//! per run.
