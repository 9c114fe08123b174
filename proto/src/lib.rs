//! Caretaker's wire protocol: the generated `caretaker.v1` messages and gRPC stubs.
//!
//! The `.proto` sources live in `proto/caretaker/v1/`; `build.rs` compiles them with protox so
//! builds need no system `protoc`. Enable the `server` feature for the collector side; the
//! agent uses the default `client` feature only. Besides the protocol, the few pieces both
//! binaries need alike: report [`limits`] and systemd notification ([`sdnotify`]).

pub mod sdnotify;

pub mod v1 {
    #![allow(clippy::doc_markdown, clippy::large_enum_variant)] // generated code
    tonic::include_proto!("caretaker.v1");
}

/// Bounds on one report that both sides know: the agent keeps its reports inside them, the
/// collector refuses reports past them (INVALID_ARGUMENT, `x-caretaker-refused: report`).
pub mod limits {
    /// Programs one inventory may list (a busy Linux server has ~6,000 packages, a Windows PC
    /// a few hundred).
    pub const MAX_SOFTWARE: usize = 20_000;
    /// Disks, volumes, interfaces, addresses per interface, logged-on users… per report.
    pub const MAX_ENTRIES: usize = 1_024;
    /// Bytes one program entry (name, version, publisher, …) may take.
    pub const MAX_SOFTWARE_ENTRY_BYTES: usize = 4_096;
}

pub use prost;
pub use prost_types;
