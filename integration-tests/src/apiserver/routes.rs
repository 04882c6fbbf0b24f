//! REST paths and query strings: `/api/v1/...` and `/apis/<group>/<version>/...` into the
//! resource, namespace, name and subresource they address. Pure.

use std::collections::HashMap;

use super::resources::{self, Resource};

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Discovery, health and version paths.
    NonResource(String),
    /// A list (GET, watch) or create (POST) target; `ns` None = all namespaces.
    Collection {
        res: &'static Resource,
        ns: Option<String>,
    },
    /// One object, or one of its subresources.
    Object {
        res: &'static Resource,
        ns: Option<String>,
        name: String,
        sub: Option<String>,
    },
}

/// The target of `path`, None when nothing is served there.
pub fn parse(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => ("", "v1", rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return Some(Target::NonResource(format!("/{}", segs.join("/")))),
    };
    let (ns, rest): (Option<String>, &[&str]) = match rest {
        // /namespaces/<ns>/<plural>...; /namespaces/<name>[/status] is the Namespace itself.
        ["namespaces", ns, plural, ..] if *plural != "status" && *plural != "finalize" => {
            (Some((*ns).to_string()), &rest[2..])
        }
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(*n), None),
        [p, n, s] => (*p, Some(*n), Some(*s)),
        _ => return None,
    };
    let res = resources::find(group, version, plural)?;
    if res.namespaced != ns.is_some() && (name.is_some() || !res.namespaced) {
        return None;
    }
    if let Some(s) = sub
        && !res.subresources.contains(&s)
    {
        return None;
    }
    Some(match name {
        None => Target::Collection { res, ns },
        Some(n) => Target::Object {
            res,
            ns,
            name: n.to_string(),
            sub: sub.map(str::to_string),
        },
    })
}

/// Query parameters, percent- and plus-decoded.
pub fn query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths() {
        match parse("/api/v1/namespaces/default/pods/p/status").unwrap() {
            Target::Object { res, ns, name, sub } => {
                assert_eq!(
                    (res.plural, ns.as_deref(), name.as_str(), sub.as_deref()),
                    ("pods", Some("default"), "p", Some("status"))
                );
            }
            t => panic!("{t:?}"),
        }
        assert!(matches!(
            parse("/api/v1/pods").unwrap(),
            Target::Collection { ns: None, .. }
        ));
        assert!(
            matches!(parse("/api/v1/namespaces/kube-system").unwrap(), Target::Object { name, .. } if name == "kube-system")
        );
        assert!(matches!(
            parse("/api/v1/namespaces/x/status").unwrap(),
            Target::Object { sub: Some(_), .. }
        ));
        assert!(matches!(
            parse("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n").unwrap(),
            Target::Object { .. }
        ));
        assert!(matches!(
            parse("/apis/certificates.k8s.io/v1/certificatesigningrequests/c/approval").unwrap(),
            Target::Object { .. }
        ));
        assert!(parse("/api/v1/namespaces/d/nodes/n").is_none());
        assert!(parse("/api/v1/pods/p").is_none());
        assert_eq!(
            parse("/version").unwrap(),
            Target::NonResource("/version".into())
        );
    }

    #[test]
    fn query_decoding() {
        let q = query(Some(
            "fieldSelector=spec.nodeName%3Dn1&labelSelector=a+in+(x)&watch=true",
        ));
        assert_eq!(q["fieldSelector"], "spec.nodeName=n1");
        assert_eq!(q["labelSelector"], "a in (x)");
        assert_eq!(q["watch"], "true");
    }
}
