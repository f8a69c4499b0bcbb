//! Keyport's headless core.
//!
//! This crate owns everything that does not need a display: the encrypted key
//! vault, the provider registry, client tokens, configuration and the
//! key-injecting HTTP proxy. The `keyport` CLI and the desktop shell are thin
//! layers that parse input, wire state together and call into this crate.

pub mod config;
pub mod config_edit;
pub mod envimport;
pub mod fsutil;
pub mod limits;
pub mod password;
pub mod paths;
pub mod providers;
pub mod proxy;
pub mod requestlog;
pub mod secret;
pub mod service;
pub mod tokens;
pub mod vault;
