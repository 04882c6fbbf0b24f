//! berth's CNI plugins (CNI spec 1.1), each a binary named `berth-<plugin>`.
//!
//! The library holds what the plugins share: the spec's types, its error JSON and codes,
//! and the plugin entry point that reads the CNI environment and stdin.
