//! An emulated Kubernetes API server for tests, with simulated agent-sandbox controller and kubelet.

mod agent;
mod api;
mod claims;
mod config;
mod controller;
mod defaults;
mod error;
mod images;
mod kubelet;
mod meta;
mod openapi;
mod patch;
pub mod pod_security;
mod podnet;
mod portforward;
mod protobuf;
mod resources;
mod runas;
mod selector;
mod server;
mod status;
mod store;
mod table;
mod watch;

pub use config::{
    EmulatorConfig, FailureKind, ImageFailure, default_agent_binary, parse_duration,
    parse_image_failure,
};
pub use controller::{NAME_HASH_LABEL, name_hash};
pub use error::Error;
pub use server::{Emulator, EmulatorHandle, kubeconfig_yaml};
