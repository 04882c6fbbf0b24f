//! The Kubernetes Container Runtime Interface, package `runtime.v1`.
//!
//! This crate owns the wire types of the CRI: the RuntimeService and ImageService
//! messages and their gRPC client and server, generated at build time from
//! `proto/api.proto`, berth's wire-identical statement of the published API (Kubernetes
//! 1.33 and later). It holds no logic; berth's `cri` module implements the services.

/// The `runtime.v1` package: messages, enums, and the tonic clients and servers.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_debug_implementations)]
    #![allow(clippy::unwrap_used, clippy::print_stdout)]
    tonic::include_proto!("runtime.v1");

    impl std::fmt::Debug for AuthConfig {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            fn redacted(s: &str) -> &'static str {
                if s.is_empty() { "" } else { "<redacted>" }
            }
            f.debug_struct("AuthConfig")
                .field("username", &self.username)
                .field("password", &redacted(&self.password))
                .field("auth", &redacted(&self.auth))
                .field("server_address", &self.server_address)
                .field("identity_token", &redacted(&self.identity_token))
                .field("registry_token", &redacted(&self.registry_token))
                .finish()
        }
    }
}

pub use v1::image_service_client::ImageServiceClient;
pub use v1::image_service_server::{ImageService, ImageServiceServer};
pub use v1::runtime_service_client::RuntimeServiceClient;
pub use v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};

#[cfg(test)]
mod tests {
    use super::v1::*;
    use prost::Message;

    /// Bytes a published-API client would put on the wire for a RunPodSandboxRequest with
    /// metadata {name "web", uid "u1", namespace "default", attempt 1}, hostname "web",
    /// a TCP port mapping 80 -> 8080 and runtime_handler "runc", spelled out field by
    /// field so that a renumbered field cannot go unnoticed.
    #[test]
    fn run_pod_sandbox_request_matches_the_published_wire_format() {
        let req = RunPodSandboxRequest {
            config: Some(PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: "web".into(),
                    uid: "u1".into(),
                    namespace: "default".into(),
                    attempt: 1,
                }),
                hostname: "web".into(),
                port_mappings: vec![PortMapping {
                    protocol: Protocol::Tcp as i32,
                    container_port: 80,
                    host_port: 8080,
                    host_ip: String::new(),
                }],
                ..Default::default()
            }),
            runtime_handler: "runc".into(),
        };
        let meta: &[u8] = &[
            0x0a, 3, b'w', b'e', b'b', // name = 1
            0x12, 2, b'u', b'1', // uid = 2
            0x1a, 7, b'd', b'e', b'f', b'a', b'u', b'l', b't', // namespace = 3
            0x20, 1, // attempt = 4
        ];
        let port: &[u8] = &[0x10, 80, 0x18, 0x90, 0x3f]; // container_port = 2, host_port = 3
        let mut config = vec![0x0a, meta.len() as u8];
        config.extend_from_slice(meta);
        config.extend_from_slice(&[0x12, 3, b'w', b'e', b'b']); // hostname = 2
        config.extend_from_slice(&[0x2a, port.len() as u8]); // port_mappings = 5
        config.extend_from_slice(port);
        let mut want = vec![0x0a, config.len() as u8];
        want.extend_from_slice(&config);
        want.extend_from_slice(&[0x12, 4, b'r', b'u', b'n', b'c']); // runtime_handler = 2
        assert_eq!(req.encode_to_vec(), want);
        assert_eq!(RunPodSandboxRequest::decode(want.as_slice()).unwrap(), req);
    }

    /// Field numbers that are out of order in the published API (and so easy to get wrong).
    #[test]
    fn out_of_order_field_numbers_are_kept() {
        let sc = LinuxContainerSecurityContext {
            run_as_group: Some(Int64Value { value: 7 }),
            no_new_privs: true,
            supplemental_groups_policy: SupplementalGroupsPolicy::Strict as i32,
            ..Default::default()
        };
        // no_new_privs = 11 (varint), run_as_group = 12 (message), policy = 17 (varint).
        assert_eq!(
            sc.encode_to_vec(),
            vec![0x58, 1, 0x62, 2, 0x08, 7, 0x88, 0x01, 1]
        );
        let spec = ImageSpec {
            user_specified_image: "a".into(),
            ..Default::default()
        };
        assert_eq!(spec.encode_to_vec(), vec![0x92, 0x01, 1, b'a']); // field 18
    }

    #[test]
    fn auth_config_debug_hides_secrets() {
        let a = AuthConfig {
            username: "me".into(),
            password: "hunter2".into(),
            ..Default::default()
        };
        let s = format!("{a:?}");
        assert!(s.contains("me") && !s.contains("hunter2"), "{s}");
    }
}
