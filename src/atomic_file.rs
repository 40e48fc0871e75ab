//! Files replaced whole: written to a temporary file beside their path, synced, then renamed
//! over it, so that a reader (a server loading an exported zone, systemd reading a unit, the
//! daemon reading a saved list after a crash) sees the old file or the new one, never half of
//! one, and a running binary being replaced is never written into. The one way the daemon and
//! its commands write a file another program may be reading.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Creates a temporary file beside `path`, hands it to `fill`, syncs it and renames it over
/// `path`; on any failure the temporary file is removed and `path` is as it was. Returns what
/// `fill` returned.
pub fn replace<T, E: From<io::Error>>(path: &Path, fill: impl FnOnce(&mut File) -> Result<T, E>) -> Result<T, E> {
    let temp = temp_beside(path);
    let done = File::create(&temp).map_err(E::from).and_then(|mut file| {
        let filled = fill(&mut file)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        Ok(filled)
    });
    if done.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    done
}

/// `.NAME.sinkhole-tmp` in the directory of `path`: hidden, and named for whoever finds one
/// left by a power cut.
fn temp_beside(path: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".sinkhole-tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sinkhole-atomic-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn a_file_is_replaced_whole_and_nothing_is_left_beside_it() {
        let dir = dir();
        let path = dir.join("zone.rpz");
        std::fs::write(&path, "old").expect("write");
        let n = replace(&path, |f| f.write_all(b"new").map(|()| 3)).expect("replaced");
        assert_eq!(n, 3);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("zone.rpz")]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_fill_leaves_the_old_file_and_no_temporary() {
        let dir = dir();
        let path = dir.join("list.txt");
        std::fs::write(&path, "old").expect("write");
        let failed: Result<(), io::Error> = replace(&path, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("the source failed"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "old");
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
