//! The in-process ImageService over berth's image store (`src/image`): list, status,
//! remove and filesystem usage here, pull in [`super::image_pull`]. Images are reported
//! as containerd's CRI plugin reports them: the ID is the config digest, tags and repo
//! digests are fully qualified, the size counts every blob of the image (index,
//! manifest, config, compressed layers), and the image config's `User` gives `uid` when
//! numeric and `username` otherwise.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use cri_proto::v1 as cri;

use super::api::{CriFuture, ImageApi};
use super::error::CriError;
use super::image_pull::{InFlightTable, PullConfig};
use super::imagefs;
use crate::image::metadata::ImageRecord;
use crate::image::{Digest, Error as ImageError, ImageStore};

/// The ImageService of one image store.
#[derive(Debug)]
pub struct Images {
    pub(super) store: Arc<ImageStore>,
    pub(super) pull: PullConfig,
    /// Pulls under way, by reference and credentials: a second caller waits for the first.
    pub(super) in_flight: InFlightTable,
}

impl Images {
    pub fn new(store: Arc<ImageStore>, pull: PullConfig) -> Self {
        Self {
            store,
            pull,
            in_flight: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn store(&self) -> &Arc<ImageStore> {
        &self.store
    }

    /// The CRI view of a stored image.
    pub(super) fn to_cri(&self, rec: &ImageRecord) -> cri::Image {
        let (uid, username) = user_of(&rec.config.user);
        cri::Image {
            id: rec.id.to_string(),
            repo_tags: rec.repo_tags.clone(),
            repo_digests: rec.repo_digests.clone(),
            size: rec.size + self.index_bytes(rec),
            uid: uid.map(|value| cri::Int64Value { value }),
            username,
            // containerd leaves the spec unset and pins only its sandbox image; berth
            // pins nothing.
            spec: None,
            pinned: false,
        }
    }

    /// Bytes of the indexes (manifest lists) the image was pulled through, which
    /// containerd counts in an image's size and the store record does not.
    fn index_bytes(&self, rec: &ImageRecord) -> u64 {
        let indexes: BTreeSet<Digest> = rec
            .repo_digests
            .iter()
            .filter_map(|rd| rd.rsplit_once('@').and_then(|(_, d)| Digest::parse(d).ok()))
            .filter(|d| *d != rec.manifest)
            .collect();
        indexes
            .iter()
            .filter_map(|d| self.store.content.size(d))
            .sum()
    }

    /// The image `query` names, `None` when it names none.
    fn resolve(&self, rpc: &'static str, query: &str) -> Result<Option<ImageRecord>, CriError> {
        match self.store.find(query) {
            Ok(rec) => Ok(Some(rec)),
            Err(ImageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(CriError::image(rpc, format!("image {query:?}"), e)),
        }
    }

    /// The verbose `info` of ImageStatus, shaped as containerd's: the top chain ID and the
    /// image config.
    fn verbose_info(&self, rec: &ImageRecord) -> Result<HashMap<String, String>, CriError> {
        let rpc = "ImageStatus";
        let object = format!("image {}", rec.id);
        let config = self
            .store
            .content
            .read(&rec.id)
            .map_err(|e| CriError::image(rpc, &object, e))?;
        let spec: serde_json::Value = serde_json::from_slice(&config).map_err(|source| {
            CriError::image(
                rpc,
                &object,
                ImageError::Json {
                    object: format!("config {}", rec.id),
                    source,
                },
            )
        })?;
        let info = serde_json::json!({
            "chainID": rec.top_chain().map(|d| d.to_string()).unwrap_or_default(),
            "imageSpec": spec,
        });
        Ok(HashMap::from([("info".to_string(), info.to_string())]))
    }
}

/// The image a request's `ImageSpec` names; empty is refused.
pub(super) fn image_of<'a>(
    rpc: &'static str,
    spec: Option<&'a cri::ImageSpec>,
) -> Result<&'a str, CriError> {
    match spec.map(|s| s.image.trim()) {
        Some(i) if !i.is_empty() => Ok(i),
        _ => Err(CriError::invalid(
            rpc,
            "image.image",
            "must name an image (a tag, repo digest or image ID)",
        )),
    }
}

/// `User` of an image config as the CRI reports it: `uid` when the user part (before any
/// `:group`) is numeric, `username` otherwise, neither when unset.
pub fn user_of(user: &str) -> (Option<i64>, String) {
    if user.is_empty() {
        return (None, String::new());
    }
    let name = user.split(':').next().unwrap_or(user);
    match name.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, name.to_string()),
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl ImageApi for Images {
    fn list_images(&self, req: cri::ListImagesRequest) -> CriFuture<'_, cri::ListImagesResponse> {
        Box::pin(async move {
            let rpc = "ListImages";
            let filter = req
                .filter
                .as_ref()
                .and_then(|f| f.image.as_ref())
                .map(|s| s.image.trim())
                .filter(|s| !s.is_empty());
            let records = match filter {
                // A filter that names no image (or is no reference at all) matches nothing.
                Some(q) => match self.store.find(q) {
                    Ok(rec) => vec![rec],
                    Err(_) => Vec::new(),
                },
                None => self
                    .store
                    .images()
                    .map_err(|e| CriError::image(rpc, "image records", e))?,
            };
            Ok(cri::ListImagesResponse {
                images: records.iter().map(|r| self.to_cri(r)).collect(),
            })
        })
    }

    fn image_status(
        &self,
        req: cri::ImageStatusRequest,
    ) -> CriFuture<'_, cri::ImageStatusResponse> {
        Box::pin(async move {
            let rpc = "ImageStatus";
            let query = image_of(rpc, req.image.as_ref())?;
            let Some(rec) = self.resolve(rpc, query)? else {
                return Ok(cri::ImageStatusResponse::default());
            };
            let info = if req.verbose {
                self.verbose_info(&rec)?
            } else {
                HashMap::new()
            };
            Ok(cri::ImageStatusResponse {
                image: Some(self.to_cri(&rec)),
                info,
            })
        })
    }

    fn pull_image(&self, req: cri::PullImageRequest) -> CriFuture<'_, cri::PullImageResponse> {
        Box::pin(self.pull(req))
    }

    fn remove_image(
        &self,
        req: cri::RemoveImageRequest,
    ) -> CriFuture<'_, cri::RemoveImageResponse> {
        Box::pin(async move {
            let rpc = "RemoveImage";
            let query = image_of(rpc, req.image.as_ref())?;
            let Some(rec) = self.resolve(rpc, query)? else {
                tracing::info!(image = query, "RemoveImage: no such image, nothing to do");
                return Ok(cri::RemoveImageResponse {});
            };
            // Like containerd, a name removes the whole image with every tag and digest,
            // not only that name; unlike it, an image a container uses is refused.
            // The freed snapshots are deleted after the answer (`remove_detached`).
            match self.store.remove_detached(rec.id.as_str()).await {
                Ok(c) => {
                    tracing::info!(
                        image = %rec.id, tags = ?rec.repo_tags, blobs = c.blobs.len(),
                        snapshots = c.snapshots.len(), freed = c.bytes, "image removed"
                    );
                    Ok(cri::RemoveImageResponse {})
                }
                // Removed by someone else meanwhile: the caller's wish holds.
                Err(ImageError::NotFound { .. }) => Ok(cri::RemoveImageResponse {}),
                Err(e) => Err(CriError::image(rpc, format!("image {query:?}"), e)),
            }
        })
    }

    fn image_fs_info(
        &self,
        _req: cri::ImageFsInfoRequest,
    ) -> CriFuture<'_, cri::ImageFsInfoResponse> {
        Box::pin(async move {
            let rpc = "ImageFsInfo";
            let root = self.store.root.clone();
            let timestamp = now_nanos();
            let usage = tokio::task::spawn_blocking({
                let root = root.clone();
                move || imagefs::usage(&root)
            })
            .await
            .map_err(|e| CriError::Internal {
                rpc,
                what: format!("disk usage of {}", root.display()),
                reason: e.to_string(),
            })?
            .map_err(|e| CriError::image(rpc, "image store", e))?;
            Ok(cri::ImageFsInfoResponse {
                image_filesystems: vec![cri::FilesystemUsage {
                    timestamp,
                    fs_id: Some(cri::FilesystemIdentifier {
                        mountpoint: root.display().to_string(),
                    }),
                    used_bytes: Some(cri::UInt64Value { value: usage.bytes }),
                    inodes_used: Some(cri::UInt64Value {
                        value: usage.inodes,
                    }),
                }],
                container_filesystems: Vec::new(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::metadata::RuntimeConfig;
    use crate::sys::overlay::RecordingOverlay;

    /// The service in-process, as the kubelet holds it: a `dyn ImageApi`, no gRPC.
    #[tokio::test]
    async fn in_process_calls_without_grpc() {
        let dir = std::env::temp_dir().join(format!("berth-unit-criimages-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = ImageStore::open(
            &dir,
            Arc::new(RecordingOverlay::default()),
            Default::default(),
        )
        .expect("store");
        let config = br#"{"architecture":"amd64","os":"linux","config":{"User":"1000:1000"},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let id = store.content.put(config, "config").expect("config blob");
        let manifest = store.content.put(b"{}", "manifest").expect("manifest blob");
        let rec = ImageRecord {
            id: id.clone(),
            manifest: manifest.clone(),
            repo_tags: vec!["reg.local/app:v1".into()],
            repo_digests: vec![format!("reg.local/app@{manifest}")],
            layers: vec![],
            diff_ids: vec![],
            chain_ids: vec![],
            size: 42,
            created: None,
            platform: "linux/amd64".into(),
            config: RuntimeConfig {
                user: "1000:1000".into(),
                ..Default::default()
            },
            stored_at: 0,
            last_used: 0,
        };
        store.meta.save(vec![rec]).expect("record");
        let api: Arc<dyn ImageApi> = Arc::new(Images::new(store, PullConfig::default()));

        let all = api
            .list_images(Default::default())
            .await
            .expect("list")
            .images;
        assert_eq!(all.len(), 1);
        let img = &all[0];
        assert_eq!(img.id, id.to_string());
        assert_eq!(img.uid, Some(cri::Int64Value { value: 1000 }));
        assert_eq!(img.size, 42, "no index: the record's size");
        let none = cri::ListImagesRequest {
            filter: Some(cri::ImageFilter {
                image: Some(cri::ImageSpec {
                    image: "reg.local/other:v1".into(),
                    ..Default::default()
                }),
            }),
        };
        assert!(api.list_images(none).await.expect("list").images.is_empty());

        let status = |image: &str, verbose| cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose,
        };
        let st = api
            .image_status(status("reg.local/app:v1", true))
            .await
            .expect("status");
        assert_eq!(st.image.as_ref().map(|i| i.id.as_str()), Some(id.as_str()));
        let info: serde_json::Value = serde_json::from_str(&st.info["info"]).expect("json");
        assert_eq!(info["imageSpec"]["config"]["User"], "1000:1000");
        let st = api
            .image_status(status(&id.hex()[..12], false))
            .await
            .expect("by prefix");
        assert!(st.image.is_some() && st.info.is_empty());

        let fs = api
            .image_fs_info(Default::default())
            .await
            .expect("fs info");
        let used = fs.image_filesystems[0]
            .used_bytes
            .as_ref()
            .expect("bytes")
            .value;
        assert!(used > 0);

        let rm = |image: &str| cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
        };
        api.remove_image(rm("reg.local/app:v1"))
            .await
            .expect("remove");
        api.remove_image(rm("reg.local/app:v1"))
            .await
            .expect("again: not an error");
        let st = api
            .image_status(status(id.as_str(), false))
            .await
            .expect("status");
        assert!(st.image.is_none());
        let e = api.remove_image(rm("")).await.expect_err("empty");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn image_user_splits_like_containerd() {
        assert_eq!(user_of(""), (None, String::new()));
        assert_eq!(user_of("1000"), (Some(1000), String::new()));
        assert_eq!(user_of("1000:1000"), (Some(1000), String::new()));
        assert_eq!(user_of("nobody"), (None, "nobody".to_string()));
        assert_eq!(user_of("www:adm"), (None, "www".to_string()));
    }

    #[test]
    fn an_empty_image_spec_is_refused_by_field() {
        let e = image_of("PullImage", None).expect_err("no spec");
        assert!(e.to_string().contains("image.image"), "{e}");
        let blank = cri::ImageSpec {
            image: "  ".into(),
            ..Default::default()
        };
        assert!(image_of("PullImage", Some(&blank)).is_err());
    }
}
