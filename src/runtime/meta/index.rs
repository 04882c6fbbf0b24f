//! Lookup by full id or unique id prefix, as containerd's CRI store resolves the ids that
//! crictl users type (`crictl stop 3f2a`).

use std::collections::BTreeSet;

use super::MetaError;

/// The set of known ids of one kind.
#[derive(Debug, Default, Clone)]
pub struct IdIndex {
    kind: &'static str,
    ids: BTreeSet<String>,
}

impl IdIndex {
    /// An empty index for `kind` ("sandbox" or "container"), named in errors.
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            ids: BTreeSet::new(),
        }
    }

    pub fn insert(&mut self, id: &str) {
        self.ids.insert(id.to_owned());
    }

    pub fn remove(&mut self, id: &str) {
        self.ids.remove(id);
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The one id equal to or starting with `prefix`.
    pub fn resolve(&self, prefix: &str, field: &'static str) -> Result<String, MetaError> {
        if prefix.is_empty() {
            return Err(MetaError::EmptyId { field });
        }
        if self.ids.contains(prefix) {
            return Ok(prefix.to_owned());
        }
        // BTreeSet order puts every id with this prefix in one run starting at `prefix`.
        let mut matches = self
            .ids
            .range(prefix.to_owned()..)
            .take_while(|id| id.starts_with(prefix));
        let first = matches.next().ok_or_else(|| MetaError::NotFound {
            kind: self.kind,
            id: prefix.to_owned(),
        })?;
        let rest = matches.count();
        if rest > 0 {
            return Err(MetaError::Ambiguous {
                kind: self.kind,
                prefix: prefix.to_owned(),
                count: rest + 1,
            });
        }
        Ok(first.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn resolves_full_ids_and_unique_prefixes() {
        let mut ix = IdIndex::new("container");
        for id in ["abc123", "abd456", "ff00"] {
            ix.insert(id);
        }
        assert_eq!(ix.resolve("abc123", "container_id").unwrap(), "abc123");
        assert_eq!(ix.resolve("abc", "container_id").unwrap(), "abc123");
        assert_eq!(ix.resolve("f", "container_id").unwrap(), "ff00");
        assert!(matches!(
            ix.resolve("ab", "container_id"),
            Err(MetaError::Ambiguous { count: 2, .. })
        ));
        assert!(matches!(
            ix.resolve("zz", "container_id"),
            Err(MetaError::NotFound {
                kind: "container",
                ..
            })
        ));
        assert!(matches!(
            ix.resolve("", "container_id"),
            Err(MetaError::EmptyId {
                field: "container_id"
            })
        ));
        ix.remove("abd456");
        assert_eq!(ix.resolve("ab", "container_id").unwrap(), "abc123");
    }

    #[test]
    fn a_full_id_that_prefixes_another_still_resolves_to_itself() {
        let mut ix = IdIndex::new("sandbox");
        ix.insert("ab");
        ix.insert("abc");
        assert_eq!(ix.resolve("ab", "pod_sandbox_id").unwrap(), "ab");
    }
}
