//! The GitLab Runner custom-executor driver: `config`, `prepare`, `run`,
//! `cleanup`.
