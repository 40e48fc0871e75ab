//! Lists fetched by URL (`[lists.NAME] urls = [...]`): the copies kept of each URL, on disk and in
//! memory, and the refresher that keeps them current.
//!
//! Owns the [`ListStore`] (the last good text of every URL, and its small JSON sidecar: ETag,
//! Last-Modified, when it was fetched, its rule count), the HTTP fetch (`fetch`), the rules an
//! update must pass to replace a good copy (`update`: bad lines, shrinkage, retries), and the
//! refresh loop (`refresh`). It never touches the packet path: a good update hands over to a
//! rebuild callback (the state's), which compiles a new snapshot from the same config and the
//! store's texts and swaps it in. It must not decide verdicts nor parse list formats itself
//! (that is `lists`), and a failed or refused update must never remove a good copy.
//!
//! Each URL is kept on its own (`state_dir/lists/<list>-<hash of list and URL>.txt` and `.json`),
//! written atomically (temporary file, fsync, rename), so that a restart without network serves
//! every list at once, and a crash mid-write leaves the previous copy.

pub(crate) mod fetch;
pub(crate) mod refresh;
pub(crate) mod update;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// What is known of one URL's copy besides its text: the sidecar file, as JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CopyMeta {
    /// The list it belongs to.
    pub(crate) list: String,
    /// The URL it came from (a sidecar of another URL that hashed alike is ignored).
    pub(crate) url: String,
    /// The server's `ETag`, sent back as `If-None-Match`.
    #[serde(default)]
    pub(crate) etag: Option<String>,
    /// The server's `Last-Modified`, sent back as `If-Modified-Since`.
    #[serde(default)]
    pub(crate) last_modified: Option<String>,
    /// When this text was downloaded (Unix seconds).
    pub(crate) fetched_at: i64,
    /// When the server last confirmed it (a download or a 304), Unix seconds: what the next
    /// refresh is timed from, and the list's last success.
    pub(crate) checked_at: i64,
    /// Rules it compiles to: what the next update's shrinkage is measured against.
    pub(crate) rules: usize,
    /// Lines of it that were skipped.
    #[serde(default)]
    pub(crate) bad_lines: usize,
}

/// The last good copy of one URL.
#[derive(Debug)]
pub(crate) struct UrlCopy {
    /// The list text, as downloaded.
    pub(crate) text: Arc<str>,
    /// Its sidecar.
    pub(crate) meta: CopyMeta,
}

/// The last good copy of every URL of the config, in memory (what snapshots are built from) and
/// in `state_dir/lists` (what a restart starts from). Owned by the state, so that copies outlive
/// snapshots and reloads: a reload uses them and downloads only URLs it has never seen.
pub(crate) struct ListStore {
    /// `state_dir/lists`: created at the first save, so that a daemon that drops root creates it
    /// as the user that will write it.
    dir: PathBuf,
    /// Copies by [`copy_key`]. Bounded by the URLs of the config: the refresher drops the copies
    /// of URLs no longer named ([`ListStore::retain`]).
    copies: Mutex<HashMap<String, Arc<UrlCopy>>>,
    /// Woken when the config was reloaded: the refresher reads the URLs again.
    changed: tokio::sync::Notify,
    /// Whether a failed write was already warned about, so that a read-only state directory
    /// warns once, not at every refresh.
    warned: std::sync::atomic::AtomicBool,
}

/// The key and file stem of one URL of one list: the list's name (made safe for a file name) and
/// a short hash of list and URL, so that two lists may name the same URL with their own settings.
pub(crate) fn copy_key(list: &str, url: &str) -> String {
    let safe: String = list
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = blake3::hash(format!("{list}\n{url}").as_bytes());
    let short: String = hash.as_bytes()[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{safe}-{short}")
}

impl ListStore {
    /// An empty store over `state_dir/lists` (nothing read yet: copies are read from disk the
    /// first time a build asks for them).
    pub(crate) fn new(state_dir: &Path) -> ListStore {
        ListStore {
            dir: state_dir.join("lists"),
            copies: Mutex::new(HashMap::new()),
            changed: tokio::sync::Notify::new(),
            warned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The store for `config`'s state directory.
    pub(crate) fn for_config(config: &Config) -> ListStore {
        ListStore::new(&config.state_dir())
    }

    /// Where the copies are kept.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<UrlCopy>>> {
        // A panic while holding it leaves a map that is still whole.
        self.copies.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The copy of `url` in `list`: the one in memory, else the saved one (read once, then kept).
    pub(crate) fn copy(&self, list: &str, url: &str) -> Option<Arc<UrlCopy>> {
        let key = copy_key(list, url);
        if let Some(copy) = self.lock().get(&key) {
            return Some(Arc::clone(copy));
        }
        let copy = Arc::new(self.read_saved(&key, list, url)?);
        Some(Arc::clone(self.lock().entry(key).or_insert(copy)))
    }

    /// The copy held in memory only (the refresher's view: what it compares an update with).
    pub(crate) fn in_memory(&self, key: &str) -> Option<Arc<UrlCopy>> {
        self.lock().get(key).cloned()
    }

    /// Reads a saved copy; None (with a warning when it is there but unreadable) otherwise.
    fn read_saved(&self, key: &str, list: &str, url: &str) -> Option<UrlCopy> {
        let meta_path = self.dir.join(format!("{key}.json"));
        let text_path = self.dir.join(format!("{key}.txt"));
        let meta = match fs::read(&meta_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(list, url, path = %meta_path.display(), error = %e, "cannot read the saved copy");
                return None;
            }
        };
        let meta: CopyMeta = match serde_json::from_slice(&meta) {
            Ok(meta) => meta,
            Err(e) => {
                tracing::warn!(list, url, path = %meta_path.display(), error = %e, "saved copy's sidecar is unreadable, ignored");
                return None;
            }
        };
        if meta.url != url || meta.list != list {
            return None;
        }
        match fs::read_to_string(&text_path) {
            Ok(text) => Some(UrlCopy {
                text: Arc::from(text),
                meta,
            }),
            Err(e) => {
                tracing::warn!(list, url, path = %text_path.display(), error = %e, "cannot read the saved copy");
                None
            }
        }
    }

    /// Makes `copy` the one served for its URL (the next build uses it) and saves it. A save that
    /// fails is a warning: the copy serves from memory until the next restart.
    pub(crate) fn put(&self, copy: UrlCopy) {
        let key = copy_key(&copy.meta.list, &copy.meta.url);
        let saved = self.save(&key, Some(&copy.text), &copy.meta);
        self.lock().insert(key, Arc::new(copy));
        self.report_save(saved);
    }

    /// Records that the server confirmed the copy of `key` unchanged at `now` (a 304), in memory
    /// and in its sidecar.
    pub(crate) fn confirm(&self, key: &str, now: i64) {
        let updated = {
            let mut copies = self.lock();
            let Some(copy) = copies.get_mut(key) else {
                return;
            };
            let mut meta = copy.meta.clone();
            meta.checked_at = now;
            let updated = Arc::new(UrlCopy {
                text: Arc::clone(&copy.text),
                meta,
            });
            *copy = Arc::clone(&updated);
            updated
        };
        let saved = self.save(key, None, &updated.meta);
        self.report_save(saved);
    }

    /// Drops the copies in memory of URLs not in `keys` (the config no longer names them); their
    /// files stay, for a config that names them again.
    pub(crate) fn retain(&self, keys: &std::collections::HashSet<String>) {
        self.lock().retain(|key, _| keys.contains(key));
    }

    /// Tells the refresher the config changed (a reload): it reads the URLs again.
    pub(crate) fn config_changed(&self) {
        self.changed.notify_one();
    }

    /// Waits for [`ListStore::config_changed`].
    pub(crate) async fn wait_changed(&self) {
        self.changed.notified().await;
    }

    fn report_save(&self, saved: io::Result<()>) {
        use std::sync::atomic::Ordering;
        match saved {
            Ok(()) => self.warned.store(false, Ordering::Relaxed),
            Err(e) if !self.warned.swap(true, Ordering::Relaxed) => tracing::warn!(
                dir = %self.dir.display(),
                error = %e,
                "cannot save list copies in the state directory: they serve from memory, and a restart without \
                 network will not have them (set server.state_dir, or StateDirectory= in the unit)"
            ),
            Err(_) => {}
        }
    }

    /// Writes the text (if given) and the sidecar of `key`, each to a temporary file that is
    /// synced and then renamed over the old one; the text first, so that a sidecar never names a
    /// text that is not there.
    fn save(&self, key: &str, text: Option<&str>, meta: &CopyMeta) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        if let Some(text) = text {
            write_atomically(&self.dir.join(format!("{key}.txt")), text.as_bytes())?;
        }
        let json = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
        write_atomically(&self.dir.join(format!("{key}.json")), &json)?;
        // The renames themselves are durable once the directory is.
        fs::File::open(&self.dir).and_then(|d| d.sync_all())
    }
}

/// Seconds since the Unix epoch: what sidecars record.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Writes `bytes` to `path`, replaced whole ([`crate::atomic_file`]).
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    crate::atomic_file::replace(path, |file| file.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sinkhole-remote-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn meta(list: &str, url: &str, rules: usize) -> CopyMeta {
        CopyMeta {
            list: list.into(),
            url: url.into(),
            etag: Some("\"v1\"".into()),
            last_modified: None,
            fetched_at: 100,
            checked_at: 100,
            rules,
            bad_lines: 0,
        }
    }

    #[test]
    fn a_copy_put_is_read_back_by_a_fresh_store() {
        let dir = temp_dir("roundtrip");
        let url = "https://lists.example/tiktok.txt";
        let store = ListStore::new(&dir);
        assert!(store.copy("tiktok", url).is_none(), "nothing saved yet");
        store.put(UrlCopy {
            text: Arc::from("tiktok.com\n"),
            meta: meta("tiktok", url, 1),
        });
        store.confirm(&copy_key("tiktok", url), 200);
        // A restart: a new store over the same directory.
        let again = ListStore::new(&dir);
        let copy = again.copy("tiktok", url).expect("the saved copy");
        assert_eq!(&*copy.text, "tiktok.com\n");
        assert_eq!(copy.meta.etag.as_deref(), Some("\"v1\""));
        assert_eq!(copy.meta.checked_at, 200, "the 304's time was saved");
        assert!(again.copy("other", url).is_none(), "keyed by list and URL");
        let leftovers: Vec<_> = fs::read_dir(dir.join("lists"))
            .expect("the lists dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "no temporary file left: {leftovers:?}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_sidecar_of_another_url_is_not_taken() {
        let dir = temp_dir("other-url");
        let store = ListStore::new(&dir);
        let key = copy_key("l", "http://a.example/");
        fs::create_dir_all(store.dir()).expect("dir");
        let json = serde_json::to_vec(&meta("l", "http://b.example/", 1)).expect("json");
        fs::write(store.dir().join(format!("{key}.json")), json).expect("sidecar");
        fs::write(store.dir().join(format!("{key}.txt")), "b.example\n").expect("text");
        assert!(store.copy("l", "http://a.example/").is_none());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_state_dir_that_cannot_be_written_keeps_the_copy_in_memory() {
        let dir = temp_dir("readonly");
        // A file where the directory should be: create_dir_all fails.
        fs::write(&dir, "not a directory").expect("file");
        let store = ListStore::new(&dir);
        store.put(UrlCopy {
            text: Arc::from("x.example\n"),
            meta: meta("l", "http://x.example/", 1),
        });
        assert!(store.copy("l", "http://x.example/").is_some(), "served from memory");
        let _ = fs::remove_file(&dir);
    }

    #[test]
    fn keys_are_safe_file_names() {
        let key = copy_key("../etc/passwd x", "http://x/");
        assert!(
            key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{key}"
        );
        assert_ne!(copy_key("a", "http://x/"), copy_key("a", "http://y/"));
    }
}
