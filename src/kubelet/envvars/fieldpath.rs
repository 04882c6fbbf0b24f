//! A pod's metadata as the downward API shows it (upstream pkg/fieldpath): names, the
//! uid, one label or annotation by `['key']`, or all of them as sorted `key="value"` lines
//! quoted as Go's `%q` quotes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// The value of `path` (`metadata.name`, `metadata.labels['k']`, ...) for `pod`, or why
/// the path is not supported.
pub fn extract(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let empty = BTreeMap::new();
    let labels = meta.labels.as_ref().unwrap_or(&empty);
    let annotations = meta.annotations.as_ref().unwrap_or(&empty);
    if let Some((base, key)) = split_subscript(path) {
        return match base {
            "metadata.annotations" => Ok(annotations.get(key).cloned().unwrap_or_default()),
            "metadata.labels" => Ok(labels.get(key).cloned().unwrap_or_default()),
            _ => Err(format!("fieldPath {path:?} does not support subscript")),
        };
    }
    match path {
        "metadata.annotations" => Ok(format_map(annotations)),
        "metadata.labels" => Ok(format_map(labels)),
        "metadata.name" => Ok(meta.name.clone().unwrap_or_default()),
        "metadata.namespace" => Ok(meta.namespace.clone().unwrap_or_default()),
        "metadata.uid" => Ok(meta.uid.clone().unwrap_or_default()),
        _ => Err(format!("unsupported fieldPath: {path}")),
    }
}

/// `metadata.labels['key']` into (`metadata.labels`, `key`).
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, key) = inner.split_once("['")?;
    (!base.is_empty()).then_some((base, key))
}

/// Sorted `key="value"` lines, no newline after the last (upstream FormatMap).
pub fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's strconv.Quote: printable characters as they are, `"` and `\` escaped, control
/// characters as `\n`, `\t`, ... or `\xNN`, other non-printing ones as `\uNNNN`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            // Go prints only the ASCII space among the spaces; the rest of the control
            // and space characters are escaped.
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                uid: Some("u-1".into()),
                labels: Some(
                    [("b", "two"), ("a", "one")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                annotations: Some(
                    [("note", "say \"hi\"\nbye\\"), ("x/y", "é\u{a0}")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn names_and_maps() {
        let p = pod();
        assert_eq!(extract(&p, "metadata.name").unwrap(), "web");
        assert_eq!(extract(&p, "metadata.namespace").unwrap(), "prod");
        assert_eq!(extract(&p, "metadata.uid").unwrap(), "u-1");
        assert_eq!(
            extract(&p, "metadata.labels").unwrap(),
            "a=\"one\"\nb=\"two\""
        );
        assert_eq!(
            extract(&p, "metadata.annotations").unwrap(),
            "note=\"say \\\"hi\\\"\\nbye\\\\\"\nx/y=\"é\\u00a0\""
        );
        assert_eq!(extract(&p, "metadata.labels['b']").unwrap(), "two");
        assert_eq!(
            extract(&p, "metadata.annotations['x/y']").unwrap(),
            "é\u{a0}"
        );
        assert_eq!(extract(&p, "metadata.labels['none']").unwrap(), "");
    }

    #[test]
    fn refusals() {
        let p = pod();
        assert_eq!(
            extract(&p, "spec.nodeName").unwrap_err(),
            "unsupported fieldPath: spec.nodeName"
        );
        assert!(
            extract(&p, "metadata.name['x']")
                .unwrap_err()
                .contains("subscript")
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(go_quote("a\u{1}b\u{7f}"), "\"a\\x01b\\x7f\"");
        assert_eq!(go_quote("tab\there"), "\"tab\\there\"");
        assert_eq!(go_quote(""), "\"\"");
    }
}
