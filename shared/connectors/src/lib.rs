//! patchflow's connectors: adapters for the systems around it.
//!
//! - [`automate`]: ConnectWise Automate, the RMM (inventory, commands, reports).
//! - [`manage`]: ConnectWise PSA (Manage), tickets.
//! - [`pagerduty`]: on-call paging through PagerDuty's Events API v2.
//! - [`msrc`]: the month's Microsoft release from the Security Update Guide's CVRF API.
//! - [`mod@file`]: the inventory and catalog files of the contract (JSON, CSV), for demos, small
//!   shops and third-party patches.
//!
//! They share [`http`] (timeouts, retries with backoff and jitter, errors naming the system,
//! the call and the field) and [`secrets`] (credentials that never print); [`settings`] is the
//! connectors file that chooses and maps them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod automate;
pub mod file;
pub mod http;
pub mod manage;
pub mod msrc;
pub mod pagerduty;
pub mod secrets;
pub mod settings;
