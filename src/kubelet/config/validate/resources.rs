//! Resource lists: quantities that parse, are not negative, and requests within limits.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::invalid;
use crate::kubelet::config::quantity::{QUANTITY_ERROR, parse_nanos};

/// The quantities of every resource list of the pod that do not parse.
pub(crate) fn quantities(pod: &Pod) -> Vec<String> {
    let mut errs = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return errs;
    };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| (format!("spec.initContainers[{i}]"), c));
    let containers = containers.chain(
        spec.containers
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("spec.containers[{i}]"), c)),
    );
    let mut lists: Vec<(String, &ResourceRequirements)> = containers
        .filter_map(|(p, c)| Some((format!("{p}.resources"), c.resources.as_ref()?)))
        .collect();
    lists.extend(
        spec.resources
            .as_ref()
            .map(|r| ("spec.resources".to_string(), r)),
    );
    for (path, r) in lists {
        for (field, list) in [
            ("limits", r.limits.as_ref()),
            ("requests", r.requests.as_ref()),
        ] {
            for (name, q) in list.into_iter().flatten() {
                if parse_nanos(&q.0).is_none() {
                    errs.push(invalid(
                        &format!("{path}.{field}[{name}]"),
                        &q.0,
                        QUANTITY_ERROR,
                    ));
                }
            }
        }
    }
    errs
}

type ResourceList = BTreeMap<String, Quantity>;

/// Each quantity of `list` that parses and is not negative, as (value, text); the others
/// are errors.
fn parsed(
    list: Option<&ResourceList>,
    path: &str,
    errs: &mut Vec<String>,
) -> BTreeMap<String, (i128, String)> {
    let mut out = BTreeMap::new();
    for (name, q) in list.into_iter().flatten() {
        let fp = format!("{path}[{name}]");
        match parse_nanos(&q.0) {
            None => errs.push(invalid(&fp, &q.0, QUANTITY_ERROR)),
            Some(v) if v < 0 => errs.push(invalid(&fp, &q.0, "must be greater than or equal to 0")),
            Some(v) => {
                out.insert(name.clone(), (v, q.0.clone()));
            }
        }
    }
    out
}

/// ValidateResourceRequirements: every quantity valid, every request within its limit.
pub(super) fn resources(r: &ResourceRequirements, path: &str, errs: &mut Vec<String>) {
    let limits = parsed(r.limits.as_ref(), &format!("{path}.limits"), errs);
    let requests = parsed(r.requests.as_ref(), &format!("{path}.requests"), errs);
    for (name, (req, req_text)) in &requests {
        let Some((limit, limit_text)) = limits.get(name) else {
            continue;
        };
        let fp = format!("{path}.requests[{name}]");
        if !overcommit_allowed(name) && req != limit {
            errs.push(invalid(
                &fp,
                req_text,
                &format!("must be equal to {name} limit of {limit_text}"),
            ));
        } else if req > limit {
            errs.push(invalid(
                &fp,
                req_text,
                &format!("must be less than or equal to {name} limit of {limit_text}"),
            ));
        }
    }
}

/// Native resources may be requested below their limit; extended resources and huge
/// pages may not (IsOvercommitAllowed).
fn overcommit_allowed(name: &str) -> bool {
    let native = !name.contains('/') || name.starts_with("kubernetes.io/");
    native && !name.starts_with("hugepages-")
}
