//! Start-up: adopt the sandboxes an earlier daemon made, roll back the half-made ones.

use std::sync::Arc;

use super::{Entry, Sandboxes, lock};
use crate::runtime::error::Result;
use crate::runtime::meta::Phase;

impl Sandboxes {
    pub(super) async fn recover(&self) -> Result<()> {
        let loaded = self.inner.store.load_all()?;
        for bad in &loaded.bad {
            tracing::error!(error = %bad, "unreadable sandbox record left in place");
        }
        for (id, rec) in loaded.good {
            if rec.phase == Phase::Creating {
                tracing::warn!(sandbox = %id, "rolling back a sandbox a crash left half-made");
                match rec.config() {
                    Ok(cfg) => self.unmake(&rec, &cfg).await,
                    Err(e) => {
                        tracing::warn!(sandbox = %id, error = %e, "config unreadable");
                        if let Err(e) = self.shutdown_holder(&rec).await {
                            tracing::warn!(sandbox = %id, error = %e, "holder shutdown");
                        }
                    }
                }
                self.inner.store.remove(&id)?;
                continue;
            }
            let watch = rec.phase == Phase::Ready && self.holder_alive(&rec);
            {
                let mut t = lock(&self.inner.table);
                if let Err(e) = t.names.reserve(&rec.name, &id) {
                    tracing::error!(sandbox = %id, error = %e, "duplicate sandbox name on disk");
                }
                t.index.insert(&id);
                t.entries.insert(id.clone(), Arc::new(Entry::new(rec)));
            }
            if watch {
                self.watch(&id).await;
            }
        }
        Ok(())
    }
}
