//! Names as apimachinery's validation checks them: DNS-1123 labels and subdomains, and
//! IANA service names for ports.

use super::invalid;

const DNS_LABEL_ERROR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS_SUBDOMAIN_ERROR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
pub(super) const PORT_RANGE_ERROR: &str = "must be between 1 and 65535, inclusive";

pub(super) fn dns_label(path: &str, value: &str, errs: &mut Vec<String>) {
    if value.len() > 63 {
        errs.push(invalid(path, value, "must be no more than 63 characters"));
    }
    if !is_dns_label(value) {
        errs.push(invalid(path, value, DNS_LABEL_ERROR));
    }
}

pub(super) fn dns_subdomain(path: &str, value: &str, errs: &mut Vec<String>) {
    if value.len() > 253 {
        errs.push(invalid(path, value, "must be no more than 253 characters"));
    }
    if !value.split('.').all(is_dns_label) {
        errs.push(invalid(path, value, DNS_SUBDOMAIN_ERROR));
    }
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'-')
}

/// IsValidPortName: an IANA_SVC_NAME.
pub(super) fn port_name_errors(name: &str) -> Vec<&'static str> {
    let mut msgs = Vec::new();
    if name.len() > 15 {
        msgs.push("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        msgs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        msgs.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        msgs.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        msgs.push("must not begin or end with a hyphen");
    }
    msgs
}
