//! From bytes to the objects a source offers: decode (manifest), default (defaults), treat
//! as a static pod (static_pod), validate (validate), in the order kubelet's file and http
//! sources do it. Also the rule that joins several sets: first come, first kept, and a later
//! duplicate UID or namespace/name rejected with an error naming both.
//!
//! Pure: no IO, no clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::Metadata;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::error::ManifestError;
use super::manifest::{self, Decoded, Object};
use super::static_pod::{self, SourceKind};
use super::{Objects, defaults, validate};

/// An object with where it came from, to name it when another one clashes with it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry<T> {
    pub file: String,
    pub label: String,
    pub object: T,
}

impl<T> Entry<T> {
    pub(crate) fn new(file: &str, label: String, object: T) -> Self {
        Entry {
            file: file.to_string(),
            label,
            object,
        }
    }
}

/// Everything one source (a file, a directory, a URL) offers at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SourceSet {
    /// Shared: the same pod object goes on to the merge and the workers uncopied.
    pub pods: Vec<Entry<Arc<Pod>>>,
    pub config_maps: Vec<Entry<ConfigMap>>,
    pub secrets: Vec<Entry<Secret>>,
    pub errors: Vec<ManifestError>,
}

impl SourceSet {
    pub fn extend(&mut self, other: SourceSet) {
        self.pods.extend(other.pods);
        self.config_maps.extend(other.config_maps);
        self.secrets.extend(other.secrets);
        self.errors.extend(other.errors);
    }
}

/// Parses one stream read from `source` (a file path or a URL).
pub(crate) fn parse_documents(source: &str, bytes: &[u8], node_name: &str) -> SourceSet {
    let kind = SourceKind::of(source);
    let mut set = SourceSet::default();
    for decoded in manifest::decode_stream(source, bytes) {
        let doc = match decoded {
            Decoded::Object(doc) => doc,
            Decoded::Error(e) => {
                set.errors.push(e);
                continue;
            }
        };
        let reject = |set: &mut SourceSet, errs: Vec<String>| {
            let rejected = !errs.is_empty();
            set.errors.extend(
                errs.into_iter()
                    .map(|e| ManifestError::new(source, &doc.label, e)),
            );
            rejected
        };
        match doc.object {
            Object::Pod(pod) => {
                let mut pod = *pod;
                // A quantity that does not parse fails the API server's decoding, before
                // defaulting could copy it from a limit into a request.
                if reject(&mut set, validate::quantities(&pod)) {
                    continue;
                }
                defaults::pod(&mut pod);
                static_pod::apply(&mut pod, source, kind, node_name);
                if !reject(&mut set, validate::pod(&pod)) {
                    set.pods.push(Entry::new(source, doc.label, Arc::new(pod)));
                }
            }
            Object::ConfigMap(cm) => {
                let mut cm = *cm;
                defaults::config_map(&mut cm);
                default_namespace(&mut cm.metadata.namespace);
                if !reject(&mut set, validate::config_map(&cm)) {
                    set.config_maps.push(Entry::new(source, doc.label, cm));
                }
            }
            Object::Secret(secret) => {
                let mut secret = *secret;
                defaults::secret(&mut secret);
                default_namespace(&mut secret.metadata.namespace);
                if !reject(&mut set, validate::secret(&secret)) {
                    set.secrets.push(Entry::new(source, doc.label, secret));
                }
            }
        }
    }
    set
}

fn default_namespace(ns: &mut Option<String>) {
    if ns.as_deref().unwrap_or("").is_empty() {
        *ns = Some("default".to_string());
    }
}

/// The sets joined: pods in order (first kept on a clash), the objects by namespace/name,
/// and every error of the sets followed by the clashes.
pub(crate) fn join<'a>(
    sets: impl IntoIterator<Item = &'a SourceSet>,
) -> (Vec<Arc<Pod>>, Objects, Vec<ManifestError>) {
    let mut pods = Vec::new();
    let mut objects = Objects::default();
    let mut errors = Vec::new();
    let mut clashes = Vec::new();
    let mut uids: HashMap<String, (&str, &str)> = HashMap::new();
    let mut names: HashMap<(String, String), (&str, &str)> = HashMap::new();
    let mut cm_names: HashMap<(String, String), (&str, &str)> = HashMap::new();
    let mut secret_names: HashMap<(String, String), (&str, &str)> = HashMap::new();
    for set in sets {
        errors.extend(set.errors.iter().cloned());
        for e in &set.pods {
            let meta = &e.object.metadata;
            let uid = meta.uid.clone().unwrap_or_default();
            let key = namespaced(&meta.namespace, &meta.name);
            if let Some((file, label)) = uids.get(&uid) {
                clashes.push(clash(e, "metadata.uid", &uid, file, label));
            } else if let Some((file, label)) = names.get(&key) {
                clashes.push(clash(
                    e,
                    "metadata.name",
                    &format!("{}/{}", key.0, key.1),
                    file,
                    label,
                ));
            } else {
                uids.insert(uid, (&e.file, &e.label));
                names.insert(key, (&e.file, &e.label));
                pods.push(e.object.clone());
            }
        }
        keep_first(
            &set.config_maps,
            &mut cm_names,
            &mut objects.config_maps,
            &mut clashes,
        );
        keep_first(
            &set.secrets,
            &mut secret_names,
            &mut objects.secrets,
            &mut clashes,
        );
    }
    errors.extend(clashes);
    (pods, objects, errors)
}

/// Keeps the first object of each namespace/name into `into`; a later one is a clash.
fn keep_first<'a, T: Clone + Metadata<Ty = ObjectMeta>>(
    entries: &'a [Entry<T>],
    seen: &mut HashMap<(String, String), (&'a str, &'a str)>,
    into: &mut BTreeMap<(String, String), T>,
    clashes: &mut Vec<ManifestError>,
) {
    for e in entries {
        let meta = e.object.metadata();
        let key = namespaced(&meta.namespace, &meta.name);
        if let Some((file, label)) = seen.get(&key) {
            let value = format!("{}/{}", key.0, key.1);
            clashes.push(clash(e, "metadata.name", &value, file, label));
        } else {
            seen.insert(key.clone(), (&e.file, &e.label));
            into.insert(key, e.object.clone());
        }
    }
}

fn namespaced(ns: &Option<String>, name: &Option<String>) -> (String, String) {
    (
        ns.clone().unwrap_or_default(),
        name.clone().unwrap_or_default(),
    )
}

fn clash<T>(
    e: &Entry<T>,
    field: &str,
    value: &str,
    first_file: &str,
    first_label: &str,
) -> ManifestError {
    ManifestError::new(
        &e.file,
        &e.label,
        format!(
            "{field}: Duplicate value: {value:?}: already given by {first_file}: {first_label}"
        ),
    )
}
