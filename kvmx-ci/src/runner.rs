//! One run of a job: lock, verify, export, VM, steps, artifacts, record,
//! notify.
