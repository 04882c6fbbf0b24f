//! hostPath volumes (upstream pkg/volume/hostpath checkType): the path on the node as it
//! is, checked against the volume's `type` first; `DirectoryOrCreate` makes a 0755
//! directory and `FileOrCreate` a 0644 file when nothing is there.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Checks (and for the `...OrCreate` types makes) `path` as `kind` asks. The error is
/// upstream's message.
pub fn check_type(path: &Path, kind: &str) -> Result<(), String> {
    let meta = || std::fs::metadata(path);
    let exists = || std::fs::symlink_metadata(path).is_ok();
    let shown = path.display();
    let is = |f: &dyn Fn(&std::fs::FileType) -> bool| meta().is_ok_and(|m| f(&m.file_type()));
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" if !exists() => DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .map_err(|e| {
                format!("hostPath type check failed: cannot create directory {shown}: {e}")
            }),
        "DirectoryOrCreate" | "Directory" => is(&|t| t.is_dir())
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {shown} is not a directory")),
        "FileOrCreate" if !exists() => create_file(path)
            .map_err(|e| format!("hostPath type check failed: cannot create file {shown}: {e}")),
        "FileOrCreate" | "File" => is(&|t| t.is_file())
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {shown} is not a file")),
        "Socket" => is(&|t| t.is_socket())
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {shown} is not a socket file")),
        "CharDevice" => is(&|t| t.is_char_device()).then_some(()).ok_or_else(|| {
            format!("hostPath type check failed: {shown} is not a character device")
        }),
        "BlockDevice" => is(&|t| t.is_block_device())
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {shown} is not a block device")),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

fn create_file(path: &Path) -> io::Result<()> {
    // As upstream's os.OpenFile(O_CREATE, 0644): the parent must exist.
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(path)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::kubelet::volumes::tests::TempDir;

    #[test]
    fn types() {
        let t = TempDir::new("hostpath");
        let dir = t.path().join("d");
        let file = t.path().join("f");
        let sock = t.path().join("s");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(&file, "x").unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();

        assert_eq!(check_type(&t.path().join("missing"), ""), Ok(()));
        assert_eq!(check_type(&dir, "Directory"), Ok(()));
        assert_eq!(
            check_type(&file, "Directory").unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a directory",
                file.display()
            )
        );
        assert!(check_type(&t.path().join("none"), "Directory").is_err());
        assert_eq!(check_type(&file, "File"), Ok(()));
        assert!(
            check_type(&dir, "File")
                .unwrap_err()
                .contains("is not a file")
        );
        assert_eq!(check_type(&sock, "Socket"), Ok(()));
        assert!(
            check_type(&file, "Socket")
                .unwrap_err()
                .contains("is not a socket file")
        );
        assert_eq!(check_type(Path::new("/dev/null"), "CharDevice"), Ok(()));
        assert!(
            check_type(&file, "CharDevice")
                .unwrap_err()
                .contains("character device")
        );
        assert!(
            check_type(Path::new("/dev/null"), "BlockDevice")
                .unwrap_err()
                .contains("block device")
        );
        assert_eq!(
            check_type(&file, "Fancy").unwrap_err(),
            "Fancy is an invalid volume type"
        );

        // The ...OrCreate types make what is missing, with upstream's modes.
        let new_dir = t.path().join("a/b/c");
        assert_eq!(check_type(&new_dir, "DirectoryOrCreate"), Ok(()));
        assert!(new_dir.is_dir());
        let new_file = t.path().join("new");
        assert_eq!(check_type(&new_file, "FileOrCreate"), Ok(()));
        assert!(new_file.is_file());
        // Both within the default 022 umask: 0755 and 0644 at most.
        assert_eq!(
            std::fs::metadata(&new_dir).unwrap().permissions().mode() & 0o022,
            0
        );
        assert_eq!(
            std::fs::metadata(&new_file).unwrap().permissions().mode() & 0o133,
            0
        );
        // Existing of the wrong kind is refused, not replaced.
        assert!(
            check_type(&file, "DirectoryOrCreate")
                .unwrap_err()
                .contains("is not a directory")
        );
        assert!(
            check_type(&dir, "FileOrCreate")
                .unwrap_err()
                .contains("is not a file")
        );
    }
}
