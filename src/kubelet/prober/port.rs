//! A probe's port, by number or by the name of one of the container's ports, as
//! upstream's probe.ResolveContainerPort.

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The port number, or why there is none (the caller adds pod, container and field).
pub(crate) fn resolve(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| format!("port {name:?} not found"))?,
    };
    match u16::try_from(number) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("invalid port number: {number}")),
    }
}

/// `host:port`, with brackets around an IPv6 address (Go's net.JoinHostPort).
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
