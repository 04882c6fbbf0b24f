//! The API objects pods refer to by name: ConfigMaps and Secrets. In standalone mode they
//! come in the same YAML streams as the pods; later the API server's watch fills them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};

/// ConfigMaps and Secrets by (namespace, name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Objects {
    pub config_maps: BTreeMap<(String, String), ConfigMap>,
    pub secrets: BTreeMap<(String, String), Secret>,
}

impl Objects {
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.config_maps
            .get(&(namespace.to_string(), name.to_string()))
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.secrets.get(&(namespace.to_string(), name.to_string()))
    }
}
