//! The refresh loop: one tokio task on the daemon's control runtime that fetches every URL of the
//! config when it is due, judges each download (`update`), keeps the good ones (`ListStore`)
//! and asks for a rebuild after each, so that a new list serves within one snapshot swap.
//!
//! Downloads run concurrently, one at most per URL; a rebuild runs on the blocking pool and one
//! at a time. A reload (`ListStore::config_changed`) makes the loop read the URLs again: new
//! ones are fetched at once, the others keep their schedule and their copies.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::fetch::{self, Fetched};
use super::update::{self, Failure, Limits};
use super::{CopyMeta, ListStore, UrlCopy, copy_key};
use crate::config::Config;

/// One URL of one list, with that list's settings.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Source {
    /// The list's name.
    pub(crate) list: String,
    /// The URL.
    pub(crate) url: String,
    /// How often it is fetched.
    pub(crate) refresh: Duration,
    /// Largest body taken.
    pub(crate) max_bytes: u64,
    /// Longest download.
    pub(crate) timeout: Duration,
    /// What an update must pass.
    pub(crate) limits: Limits,
}

impl Source {
    fn key(&self) -> String {
        copy_key(&self.list, &self.url)
    }
}

/// Every URL of a config, list by list.
pub(crate) fn sources(config: &Config) -> Vec<Source> {
    config
        .lists
        .iter()
        .flat_map(|(name, list)| {
            list.urls.iter().map(move |url| Source {
                list: name.clone(),
                url: url.get_ref().clone(),
                refresh: list.refresh(),
                max_bytes: list.max_bytes(),
                timeout: list.timeout(),
                limits: Limits {
                    max_bad_share: list.max_bad_share(),
                    max_shrink: list.max_shrink(),
                },
            })
        })
        .collect()
}

/// Where one URL stands in the schedule.
struct Slot {
    /// When it is next fetched.
    due: Instant,
    /// Failures in a row since its last success.
    failures: u32,
}

/// What one download task hands back.
struct Done {
    source: Source,
    outcome: Result<Update, Failure>,
}

/// A download that passed.
enum Update {
    /// 304: the copy is current.
    Unchanged,
    /// A new copy to keep.
    New(UrlCopy),
}

/// Runs until aborted: fetches each URL of `sources()` when due, keeps the good updates in
/// `store`, and calls `rebuild` (on the blocking pool) after each. `first_round` turns true once
/// every URL that had no copy at the start was tried once (and the rebuild after it done): what
/// start-up waits for, up to `server.list_wait`.
pub(crate) async fn run(
    store: Arc<ListStore>,
    sources: impl Fn() -> Vec<Source>,
    rebuild: Arc<dyn Fn() + Send + Sync>,
    first_round: watch::Sender<bool>,
) {
    let client = match fetch::client() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the HTTP client: lists by URL are not fetched");
            let _ = first_round.send(true);
            return;
        }
    };
    let mut schedule: HashMap<String, Slot> = HashMap::new();
    let mut running: JoinSet<Done> = JoinSet::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut current = sources();
    let mut waiting: HashSet<String> = current
        .iter()
        .filter(|s| store.copy(&s.list, &s.url).is_none())
        .map(Source::key)
        .collect();
    let _ = first_round.send(waiting.is_empty());
    for source in &current {
        register_failure_series(&source.list);
    }
    loop {
        let keys: HashSet<String> = current.iter().map(Source::key).collect();
        schedule.retain(|key, _| keys.contains(key));
        store.retain(&keys);
        let now = Instant::now();
        for source in &current {
            let key = source.key();
            let slot = schedule.entry(key.clone()).or_insert_with(|| Slot {
                due: first_due(&store, source, now),
                failures: 0,
            });
            if slot.due <= now && !in_flight.contains(&key) {
                in_flight.insert(key);
                let previous = store.copy(&source.list, &source.url);
                running.spawn(attempt(client.clone(), source.clone(), previous));
            }
        }
        let next = current
            .iter()
            .filter(|s| !in_flight.contains(&s.key()))
            .filter_map(|s| schedule.get(&s.key()).map(|slot| slot.due))
            .min();
        tokio::select! {
            () = sleep_until(next) => {}
            Some(joined) = running.join_next(), if !running.is_empty() => {
                let Ok(done) = joined else { continue };
                let key = done.source.key();
                in_flight.remove(&key);
                let before = schedule.get(&key).map_or(0, |slot| slot.failures);
                let failures = settle(&store, &done, &rebuild, before).await;
                if let Some(slot) = schedule.get_mut(&key) {
                    slot.failures = failures;
                    slot.due = Instant::now() + update::next_attempt(failures, done.source.refresh);
                }
                if waiting.remove(&key) && waiting.is_empty() {
                    let _ = first_round.send(true);
                }
            }
            () = store.wait_changed() => {
                current = sources();
                for source in &current {
                    register_failure_series(&source.list);
                }
                waiting.retain(|key| current.iter().any(|s| s.key() == *key));
                if waiting.is_empty() {
                    let _ = first_round.send(true);
                }
            }
        }
    }
}

/// When a URL seen for the first time is due: at once without a copy; else its regular refresh
/// after the copy was last confirmed (at once if that is past).
fn first_due(store: &ListStore, source: &Source, now: Instant) -> Instant {
    let Some(copy) = store.copy(&source.list, &source.url) else {
        return now;
    };
    let age = super::now_unix().saturating_sub(copy.meta.checked_at).max(0);
    let age = Duration::from_secs(u64::try_from(age).unwrap_or(0));
    now + source.refresh.saturating_sub(age)
}

async fn sleep_until(next: Option<Instant>) {
    match next {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One download and its judgement (parsing runs on the blocking pool).
async fn attempt(client: reqwest::Client, source: Source, previous: Option<Arc<UrlCopy>>) -> Done {
    let meta = previous.as_ref().map(|p| &p.meta);
    let fetched = fetch::fetch(&client, &source.url, meta, source.max_bytes, source.timeout).await;
    let outcome = match fetched {
        Err(failure) => Err(failure),
        Ok(Fetched::NotModified) => Ok(Update::Unchanged),
        Ok(Fetched::Body {
            text,
            etag,
            last_modified,
        }) => {
            let before = previous.as_ref().map(|p| p.meta.rules);
            let limits = source.limits;
            let judged = tokio::task::spawn_blocking(move || {
                let judged = update::judge(&text, before, limits);
                (text, judged)
            })
            .await;
            match judged {
                Ok((text, Ok(judged))) => {
                    let now = super::now_unix();
                    Ok(Update::New(UrlCopy {
                        text: Arc::from(text),
                        meta: CopyMeta {
                            list: source.list.clone(),
                            url: source.url.clone(),
                            etag,
                            last_modified,
                            fetched_at: now,
                            checked_at: now,
                            rules: judged.rules,
                            bad_lines: judged.bad_lines,
                        },
                    }))
                }
                Ok((_, Err(failure))) => Err(failure),
                Err(e) => Err(Failure::Network(format!("the parse did not finish: {e}"))),
            }
        }
    };
    Done { source, outcome }
}

/// Keeps, counts and logs the outcome of one attempt; returns the URL's failures in a row
/// (`before`: those up to this attempt).
async fn settle(store: &Arc<ListStore>, done: &Done, rebuild: &Arc<dyn Fn() + Send + Sync>, before: u32) -> u32 {
    let Source { list, url, .. } = &done.source;
    let now = super::now_unix();
    let success = |result: &'static str| {
        metrics::counter!(crate::metrics::LIST_UPDATES, "list" => list.clone(), "result" => result).increment(1);
        metrics::gauge!(crate::metrics::LIST_LAST_SUCCESS, "list" => list.clone()).set(now as f64);
    };
    match &done.outcome {
        Ok(Update::Unchanged) => {
            store.confirm(&done.source.key(), now);
            success("unchanged");
            tracing::debug!(list, url, "list unchanged (304)");
            0
        }
        Ok(Update::New(copy)) => {
            let rules = copy.meta.rules;
            let bad_lines = copy.meta.bad_lines;
            store.put(UrlCopy {
                text: Arc::clone(&copy.text),
                meta: copy.meta.clone(),
            });
            let rebuild = Arc::clone(rebuild);
            let _ = tokio::task::spawn_blocking(move || rebuild()).await;
            success("updated");
            tracing::info!(list, url, rules, bad_lines, "list updated");
            0
        }
        Err(failure) => {
            let kept = store.in_memory(&done.source.key()).map(|c| c.meta.rules);
            tracing::warn!(
                list,
                url,
                reason = failure.reason(),
                error = %failure,
                kept_rules = kept.unwrap_or(0),
                "list update failed; the previous copy keeps serving"
            );
            metrics::counter!(
                crate::metrics::LIST_UPDATE_FAILURES,
                "list" => list.clone(),
                "reason" => failure.reason()
            )
            .increment(1);
            before.saturating_add(1)
        }
    }
}

/// Registers every `reason` series of a list at 0, so that a rate() over them works from the
/// first failure on.
fn register_failure_series(list: &str) {
    for reason in Failure::REASONS {
        metrics::counter!(
            crate::metrics::LIST_UPDATE_FAILURES,
            "list" => list.to_string(),
            "reason" => reason
        )
        .increment(0);
    }
}
