//! Schedules: cron expressions (croner) and systemd calendar specs, when a
//! job is due, systemd user units, crontab lines, and the daemon loop.
