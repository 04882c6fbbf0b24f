//! The seam in front of the image store, as the container logic uses it: find an
//! image, make and remove a container's rootfs and its image volumes' views. The real
//! one is [`ImageStore`]; the container tests use a recording fake
//! (`crate::runtime::fakes`).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use crate::image::metadata::ImageRecord;
use crate::image::{ImageStore, Result};

/// A future a [`ContainerImages`] call returns (boxed: the seam is used as a trait object).
pub type ImageFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// The images containers are made from.
pub trait ContainerImages: Send + Sync + std::fmt::Debug {
    /// The image a name, digest or id names.
    fn find(&self, query: &str) -> Result<ImageRecord>;
    /// Makes and mounts `container`'s rootfs from `image`; returns the mount point.
    fn create_rootfs<'a>(&'a self, container: &'a str, image: &'a str) -> ImageFuture<'a, PathBuf>;
    /// The writable (upper) directory of `container`'s rootfs.
    fn rootfs_upper(&self, container: &str) -> Result<PathBuf>;
    /// Unmounts and removes `container`'s rootfs (none is no error).
    fn remove_rootfs(&self, container: &str) -> Result<()>;
    /// Mounts a read-only view of `image` for `owner` under `name`; returns the image and
    /// the view's root.
    fn create_view<'a>(
        &'a self,
        owner: &'a str,
        name: &'a str,
        image: &'a str,
    ) -> ImageFuture<'a, (ImageRecord, PathBuf)>;
    /// Removes every view of `owner` (none is no error).
    fn remove_views(&self, owner: &str) -> Result<()>;
    /// The owners that have views.
    fn view_owners(&self) -> Result<Vec<String>>;
}

impl ContainerImages for ImageStore {
    fn find(&self, query: &str) -> Result<ImageRecord> {
        ImageStore::find(self, query)
    }

    fn create_rootfs<'a>(&'a self, container: &'a str, image: &'a str) -> ImageFuture<'a, PathBuf> {
        Box::pin(ImageStore::create_rootfs(self, container, image, None))
    }

    fn rootfs_upper(&self, container: &str) -> Result<PathBuf> {
        ImageStore::rootfs_upper(self, container)
    }

    fn remove_rootfs(&self, container: &str) -> Result<()> {
        ImageStore::remove_rootfs(self, container)
    }

    fn create_view<'a>(
        &'a self,
        owner: &'a str,
        name: &'a str,
        image: &'a str,
    ) -> ImageFuture<'a, (ImageRecord, PathBuf)> {
        Box::pin(ImageStore::create_view(self, owner, name, image))
    }

    fn remove_views(&self, owner: &str) -> Result<()> {
        ImageStore::remove_views(self, owner)
    }

    fn view_owners(&self) -> Result<Vec<String>> {
        ImageStore::view_owners(self)
    }
}
