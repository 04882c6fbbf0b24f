//! CRI names: the kubelet identifies a sandbox by (name, namespace, uid, attempt) and a
//! container by its name and attempt within a sandbox; a second create under a name that
//! is still taken must fail rather than make a twin. Names are built exactly as
//! containerd builds them (`makeSandboxName`, `makeContainerName`), so logs and tools
//! read the same on both runtimes.

use std::collections::HashMap;

use cri_proto::v1::{ContainerMetadata, PodSandboxMetadata};

use super::MetaError;

/// `<name>_<namespace>_<uid>_<attempt>`.
pub fn sandbox_name(m: &PodSandboxMetadata) -> Result<String, MetaError> {
    if m.name.is_empty() {
        return Err(MetaError::MissingField {
            field: "config.metadata.name",
        });
    }
    Ok(format!(
        "{}_{}_{}_{}",
        m.name, m.namespace, m.uid, m.attempt
    ))
}

/// `<container>_<pod>_<namespace>_<pod uid>_<attempt>`.
pub fn container_name(
    c: &ContainerMetadata,
    pod: &PodSandboxMetadata,
) -> Result<String, MetaError> {
    if c.name.is_empty() {
        return Err(MetaError::MissingField {
            field: "config.metadata.name",
        });
    }
    Ok(format!(
        "{}_{}_{}_{}_{}",
        c.name, pod.name, pod.namespace, pod.uid, c.attempt
    ))
}

/// Which id holds which name.
#[derive(Debug)]
pub struct NameRegistrar {
    kind: &'static str,
    names: HashMap<String, String>,
}

impl NameRegistrar {
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            names: HashMap::new(),
        }
    }

    /// Takes `name` for `id`; taking it again for the same id is a no-op.
    pub fn reserve(&mut self, name: &str, id: &str) -> Result<(), MetaError> {
        match self.names.get(name) {
            Some(holder) if holder != id => Err(MetaError::NameReserved {
                kind: self.kind,
                name: name.to_owned(),
                holder: holder.clone(),
            }),
            Some(_) => Ok(()),
            None => {
                self.names.insert(name.to_owned(), id.to_owned());
                Ok(())
            }
        }
    }

    /// Frees `name` if `id` holds it.
    pub fn release(&mut self, name: &str, id: &str) {
        if self.names.get(name).is_some_and(|h| h == id) {
            self.names.remove(name);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pod() -> PodSandboxMetadata {
        PodSandboxMetadata {
            name: "web".into(),
            uid: "u-1".into(),
            namespace: "default".into(),
            attempt: 2,
        }
    }

    #[test]
    fn names_are_built_like_containerd() {
        assert_eq!(sandbox_name(&pod()).unwrap(), "web_default_u-1_2");
        let c = ContainerMetadata {
            name: "nginx".into(),
            attempt: 0,
        };
        assert_eq!(
            container_name(&c, &pod()).unwrap(),
            "nginx_web_default_u-1_0"
        );
        assert!(matches!(
            sandbox_name(&PodSandboxMetadata::default()),
            Err(MetaError::MissingField { .. })
        ));
    }

    #[test]
    fn a_reserved_name_is_refused_to_another_id_until_released() {
        let mut r = NameRegistrar::new("sandbox");
        r.reserve("a", "id1").unwrap();
        r.reserve("a", "id1").unwrap();
        let e = r.reserve("a", "id2").unwrap_err();
        assert!(e.to_string().contains("reserved for \"id1\""), "{e}");
        r.release("a", "id2");
        assert!(r.reserve("a", "id2").is_err());
        r.release("a", "id1");
        r.reserve("a", "id2").unwrap();
    }
}
