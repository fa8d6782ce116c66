//! Run folders under `<data>/ci/<job>/runs/<id>/`: `run.json`, the combined
//! log with timestamps, one log per step, artifacts; retention; runs left by
//! a killed kvmx-ci.
