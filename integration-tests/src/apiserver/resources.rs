//! The resources the fixture serves: the table that routing, discovery, authorization and
//! the store key on. Only what a node agent talks to; each entry is shaped as the real
//! server's discovery document describes it.

/// One served resource.
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub subresources: &'static [&'static str],
    pub short_names: &'static [&'static str],
}

impl Resource {
    /// `v1` or `group/version`, as in an object's apiVersion.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// `plural` or `plural.group`: the store's key and the name in error messages.
    pub fn id(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
    pub fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }
}

#[allow(clippy::too_many_arguments)] // one column per discovery field keeps the table readable
const fn r(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    subresources: &'static [&'static str],
    short_names: &'static [&'static str],
) -> Resource {
    Resource {
        group,
        version,
        plural,
        singular,
        kind,
        namespaced,
        subresources,
        short_names,
    }
}

pub static RESOURCES: &[Resource] = &[
    r(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["status"],
        &["ns"],
    ),
    r(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        false,
        &["status"],
        &["no"],
    ),
    r(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        true,
        &["status", "eviction"],
        &["po"],
    ),
    r(
        "",
        "v1",
        "services",
        "service",
        "Service",
        true,
        &["status"],
        &["svc"],
    ),
    r(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &[],
        &["cm"],
    ),
    r("", "v1", "secrets", "secret", "Secret", true, &[], &[]),
    r(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["token"],
        &["sa"],
    ),
    r("", "v1", "events", "event", "Event", true, &[], &["ev"]),
    r(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        &[],
        &[],
    ),
    r(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        &[],
        &[],
    ),
    r(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        true,
        &[],
        &["ev"],
    ),
    r(
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "certificatesigningrequest",
        "CertificateSigningRequest",
        false,
        &["approval", "status"],
        &["csr"],
    ),
];

/// The resource served at `group/version/plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of a plural in the core group (the fixture's own helpers use it).
pub fn core(plural: &str) -> Option<&'static Resource> {
    find("", "v1", plural)
}

/// The groups other than core, in discovery order, without repeats.
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}
