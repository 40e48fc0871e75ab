//! The live state: one immutable [`Snapshot`] of config, lists and policies behind an `ArcSwap`.
//!
//! Every packet loads the snapshot once (a few atomic operations, no lock) and reads only that.
//! A reload builds a whole new snapshot off the packet path, and swaps it in only if it built:
//! a broken config or an unreadable list is logged and counted and the old snapshot keeps
//! serving. The packet cache and the hit log are not part of the snapshot: they outlive reloads.
//!
//! Lists fetched by URL are kept in a [`ListStore`] that the state owns (it outlives snapshots):
//! a build reads their texts from it, never from the network. A good download rebuilds the
//! snapshot from the running config and the store ([`State::rebuild_lists`]); a reload uses the
//! copies it has, and the refresher fetches only the URLs it has never seen.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use tokio::sync::watch;

use crate::cache::TtlLimits;
use crate::config::{
    ClientIpMode, Config, ConfigError, Diagnostic, HitsTarget, Origin, UpstreamAddr, UpstreamProtocol,
};
use crate::ddr::Ddr;
use crate::hitlog::{ClientPrivacy, HitContext};
use crate::lists::{self, DomainSetBuilder};
use crate::policy::{NamedList, OnMissingList, PolicySpec, Rules};
use crate::prefixes::PrefixTable;
use crate::ratelimit::RateLimits;
use crate::remote::{CopyMeta, ListStore, refresh};
use crate::upstream::{Encryption, PoolSettings, Roots, ServerSpec, UpstreamPool};

/// Everything a query reads, immutable once built.
pub struct Snapshot {
    /// The config it was built from (for reports and the settings read at start).
    pub config: Config,
    /// Who may query at all.
    pub acl: PrefixTable<()>,
    /// What verdicts are decided from: the client table, the policies and their lists.
    pub rules: Rules,
    /// How the hit log shows the clients of the hits decided in this snapshot.
    pub hit_privacy: ClientPrivacy,
    /// Where to forward. Kept across reloads when its settings did not change, so that server
    /// health survives.
    pub upstream: Arc<UpstreamPool>,
    /// Cache lifetime limits.
    pub ttl_limits: TtlLimits,
    /// Rate limits on UDP queries.
    pub ratelimit: RateLimits,
    /// Non-fatal problems (duplicate prefixes, windows over, bad list lines), for the logs.
    pub warnings: Vec<Diagnostic>,
    /// Where each list with `urls` stands: which URLs have a copy, and from when.
    pub(crate) url_lists: Vec<UrlListStatus>,
    /// The DDR answers (`_dns.resolver.arpa`): built with the config, since they say what it does.
    pub(crate) ddr: Ddr,
}

/// One list with `urls`, as a snapshot was built with it: for `check`, the logs and metrics.
#[derive(Clone, Debug)]
pub(crate) struct UrlListStatus {
    /// The list's name.
    pub(crate) name: String,
    /// Each URL with the sidecar of its copy, or None where there is none yet.
    pub(crate) urls: Vec<(String, Option<CopyMeta>)>,
    /// No URL of it has a copy: it has never loaded.
    pub(crate) never_loaded: bool,
    /// While it has never loaded, a built-in copy stands in (its `builtin` entries, or the
    /// built-in list of its name).
    pub(crate) stand_in: Option<String>,
}

impl UrlListStatus {
    /// Never loaded, with nothing to stand in: what `on_missing_list` is about.
    pub(crate) fn missing(&self) -> bool {
        self.never_loaded && self.stand_in.is_none()
    }
}

impl Snapshot {
    /// Total rules over all lists.
    pub fn rule_count(&self) -> usize {
        self.rules.rule_count()
    }

    /// What DDR offers clients (`_dns.resolver.arpa`), as a line for `check`; None when it
    /// offers nothing (no encrypted listener, or no name for it).
    pub fn ddr_summary(&self) -> Option<&str> {
        self.ddr.summary()
    }
}

impl HitContext for Snapshot {
    fn rules(&self) -> &Rules {
        &self.rules
    }

    fn client_privacy(&self) -> &ClientPrivacy {
        &self.hit_privacy
    }
}

/// Builds a snapshot from a loaded config: reads and compiles every list, builds the policy
/// table. A list file that cannot be read is an error located at its entry in the config.
///
/// Lists fetched by URL are read from their saved copies in the state directory (never from the
/// network): what `check` shows is what a restart without network would serve.
pub fn build(config: Config) -> Result<Snapshot, ConfigError> {
    let store = ListStore::for_config(&config);
    build_reusing(config, None, &store)
}

fn build_reusing(config: Config, previous: Option<&Snapshot>, store: &ListStore) -> Result<Snapshot, ConfigError> {
    let mut errors = Vec::new();
    let mut warnings = config.warnings(now_unix());
    let mut lists = Vec::with_capacity(config.lists.len());
    let mut url_lists = Vec::new();
    for (name, list) in &config.lists {
        let mut builder = DomainSetBuilder::new();
        let mut bad_lines = Vec::new();
        let mut sources = Vec::new();
        if !list.urls.is_empty() {
            let status = add_url_copies(name, list, store, &mut builder, &mut bad_lines, &mut sources);
            url_lists.push(status);
        }
        for builtin in &list.builtin {
            let source = format!("builtin:{}", builtin.get_ref());
            // Names were validated by config.
            if let Some(text) = lists::builtin(builtin.get_ref()) {
                bad_lines.extend(builder.add_text(&source, text));
            }
            sources.push(source);
        }
        for file in &list.files {
            let path = config.resolve(file.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(text) => bad_lines.extend(builder.add_text(&path.display().to_string(), &text)),
                Err(e) => errors.push(
                    config
                        .origin
                        .error(file.span(), format!("list {name}: cannot read {}: {e}", path.display())),
                ),
            }
            sources.push(path.display().to_string());
        }
        for (line, rule) in list.domains.iter().enumerate() {
            if let Err(e) = builder.add_rule(rule.get_ref()) {
                errors.push(config.origin.error(rule.span(), format!("list {name}: {e}")));
            }
            if line == 0 {
                sources.push("inline".into());
            }
        }
        for (n, range) in list.ip.iter().enumerate() {
            // Validated by config; an error here is reported at its key all the same.
            let added =
                lists::parse_range(range.get_ref()).and_then(|net| builder.add_range(net).map_err(|e| e.to_string()));
            if let Err(e) = added {
                errors.push(config.origin.error(range.span(), format!("list {name}: ip: {e}")));
            }
            if n == 0 {
                sources.push("inline ip".into());
            }
        }
        warnings.extend(bad_lines.iter().map(|b| Diagnostic {
            location: format!("{}:{}", b.source, b.line),
            message: format!("list {name}: skipped line: {}: {}", b.reason, b.text),
        }));
        let set = builder.build();
        // RPZ triggers sinkhole does not apply: reported, never fatal.
        warnings.extend(set.rpz_ignored().lines().into_iter().map(|line| Diagnostic {
            location: sources.join(", "),
            message: format!("list {name}: {line}"),
        }));
        lists.push(NamedList {
            name: Arc::from(name.as_str()),
            set,
            bad_lines,
            sources,
        });
    }
    let servers = match config.upstream_servers() {
        Ok(servers) => servers,
        Err(ConfigError::Invalid(mut e)) => {
            errors.append(&mut e);
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    if !errors.is_empty() {
        return Err(ConfigError::Invalid(errors));
    }

    let mut acl = PrefixTable::default();
    for net in config.server.allow.get_ref() {
        acl.insert_new(*net, ());
    }
    let list_id = |name: &str| lists.iter().position(|l| &*l.name == name);
    let missing = |name: &str| url_lists.iter().any(|l| l.name == name && l.missing());
    warnings.extend(missing_list_warnings(&config, &url_lists));
    let specs: Vec<PolicySpec> = config
        .policies
        .iter()
        .map(|p| PolicySpec {
            name: p.name.get_ref().clone(),
            clients: p.clients.get_ref().iter().map(|c| *c.get_ref()).collect(),
            // Names were validated by config.
            block: p.block.iter().filter_map(|l| list_id(l.get_ref())).collect(),
            allow: p.allow.iter().filter_map(|l| list_id(l.get_ref())).collect(),
            mode: p.mode,
            window: p.window,
            phases: p.timeline.clone(),
            schedule: p.weekly.clone(),
            egress: p.egress,
            answer: p.answer,
            block_ttl: p.block_ttl,
            not_ready: p.on_missing_list == OnMissingList::Closed && p.block.iter().any(|l| missing(l.get_ref())),
        })
        .collect();
    let settings = PoolSettings {
        timeout: Duration::from_millis(config.upstream.timeout_ms),
        max_inflight: *config.upstream.max_inflight.get_ref(),
        case_randomization: config.upstream.case_randomization,
    };
    let upstream_specs: Vec<ServerSpec> = servers.iter().map(server_spec).collect();
    let roots = upstream_roots(&config)?;
    let upstream = match previous {
        Some(p)
            if p.upstream.specs() == upstream_specs.as_slice()
                && p.upstream.settings() == settings
                && *p.upstream.roots() == roots =>
        {
            Arc::clone(&p.upstream)
        }
        _ => Arc::new(UpstreamPool::with_specs(&upstream_specs, settings, roots).map_err(|e| {
            ConfigError::from(config.origin.error(config.keys_span("upstream.servers"), e.to_string()))
        })?),
    };
    let ttl_limits = TtlLimits {
        min: config.cache.min_ttl,
        max: config.cache.max_ttl,
        negative_max: config.cache.negative_max_ttl,
        servfail: config.cache.servfail_ttl,
        stale: config.cache.serve_stale,
    };
    let rl = &config.ratelimit;
    let mut exempt = PrefixTable::default();
    for net in &rl.exempt {
        exempt.insert_new(*net, ());
    }
    let ratelimit = RateLimits {
        qps: rl.qps,
        burst: rl.client_burst(),
        identical_qps: rl.identical_qps,
        identical_burst: rl.identical_burst(),
        slip: rl.slip,
    };
    let hit_privacy = match config.log.client_ip {
        ClientIpMode::Full => ClientPrivacy::Full,
        ClientIpMode::Truncated => ClientPrivacy::Truncated,
        // Validation makes sure of a salt.
        ClientIpMode::Hashed => ClientPrivacy::Hashed(config.log.hash_salt().unwrap_or_default().into()),
        ClientIpMode::None => ClientPrivacy::Omitted,
    };
    let (ddr, ddr_warnings) = Ddr::build(&config);
    warnings.extend(ddr_warnings);
    Ok(Snapshot {
        ddr,
        ratelimit,
        rules: Rules::build(&acl, &exempt, lists, &specs),
        acl,
        hit_privacy,
        upstream,
        ttl_limits,
        warnings,
        url_lists,
        config,
    })
}

/// Adds the copies of a list's URLs to its builder, or, while none has loaded, its built-in
/// stand-in (the built-in list of its name, where it has no `builtin` of its own); says where
/// each came from in `sources`.
fn add_url_copies(
    name: &str,
    list: &crate::config::ListConfig,
    store: &ListStore,
    builder: &mut DomainSetBuilder,
    bad_lines: &mut Vec<lists::BadLine>,
    sources: &mut Vec<String>,
) -> UrlListStatus {
    let mut urls = Vec::with_capacity(list.urls.len());
    let every = crate::config::TimeSpan(list.refresh());
    for url in &list.urls {
        let url = url.get_ref();
        match store.copy(name, url) {
            Some(copy) => {
                bad_lines.extend(builder.add_text(url, &copy.text));
                sources.push(format!(
                    "{url} (copy of {}, {} rules; refreshed every {every})",
                    show_time(copy.meta.fetched_at),
                    copy.meta.rules
                ));
                urls.push((url.clone(), Some(copy.meta.clone())));
            }
            None => {
                sources.push(format!("{url} (never loaded; tried every {every})"));
                urls.push((url.clone(), None));
            }
        }
    }
    let never_loaded = urls.iter().all(|(_, meta)| meta.is_none());
    let stand_in = if !list.builtin.is_empty() {
        Some(format!(
            "its builtin {}",
            list.builtin
                .iter()
                .map(|b| b.get_ref().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else if let Some(text) = lists::builtin(name).filter(|_| never_loaded) {
        let source = format!("builtin:{name}");
        bad_lines.extend(builder.add_text(&source, text));
        sources.push(format!("{source} (stands in until a URL loads)"));
        Some(source)
    } else {
        None
    };
    UrlListStatus {
        name: name.to_string(),
        urls,
        never_loaded,
        stand_in,
    }
}

/// What each policy does about the lists it blocks that never loaded, said once per build: a
/// warning for the logs and `check`.
fn missing_list_warnings(config: &Config, url_lists: &[UrlListStatus]) -> Vec<Diagnostic> {
    let mut warnings = Vec::new();
    for status in url_lists.iter().filter(|l| l.never_loaded) {
        let users: Vec<&crate::config::PolicyConfig> = config
            .policies
            .iter()
            .filter(|p| p.block.iter().any(|l| *l.get_ref() == status.name))
            .collect();
        let span = config.keys_span(&format!("lists.{}.urls", status.name));
        if let Some(stand_in) = &status.stand_in {
            warnings.push(config.origin.error(
                span.clone(),
                format!(
                    "list {}: no URL of it has loaded yet (no download, no saved copy); {stand_in} serves until one does",
                    status.name
                ),
            ));
            continue;
        }
        if users.is_empty() {
            warnings.push(config.origin.error(
                span.clone(),
                format!(
                    "list {}: no URL of it has loaded yet (no download, no saved copy)",
                    status.name
                ),
            ));
        }
        for policy in users {
            let what = match policy.on_missing_list {
                OnMissingList::Closed => {
                    "on_missing_list = \"closed\": its clients get SERVFAIL (EDE 14 Not Ready) for every name it \
                     neither blocks nor excepts, until the list loads"
                }
                OnMissingList::Open => {
                    "on_missing_list = \"open\": it blocks what its other lists have and forwards the rest, until \
                     the list loads"
                }
            };
            warnings.push(config.origin.error(
                span.clone(),
                format!(
                    "list {}: no URL of it has loaded yet (no download, no saved copy); policy {:?} blocks it, {what}",
                    status.name,
                    policy.name.get_ref()
                ),
            ));
        }
    }
    warnings
}

/// A Unix time as RFC 3339 (UTC).
fn show_time(t: i64) -> String {
    jiff::Timestamp::from_second(t).map_or_else(|_| t.to_string(), |t| t.to_string())
}

/// Why a reload left the previous state serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config or a list does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The new config blocks nothing while the running one blocks: refused, since that is far
    /// more often an accident (an empty or truncated file) than a decision; a restart applies it.
    #[error("the new config blocks nothing while the running one does; restart sinkhole to apply it")]
    StopsBlocking,
}

/// Where the config comes from, so that a reload reads it again.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    /// The config compiled into the binary.
    Embedded,
    /// A file.
    File(PathBuf),
    /// Config text already loaded by the caller ([`State::from_config`]): a reload parses the
    /// same text again and reads its lists again.
    Text(Origin),
}

impl ConfigSource {
    /// Reads and validates the config.
    pub fn load(&self) -> Result<Config, ConfigError> {
        match self {
            ConfigSource::Embedded => Config::embedded(),
            ConfigSource::File(path) => Config::load(path),
            ConfigSource::Text(origin) => Config::parse(origin.clone()),
        }
    }
}

/// The owner of the live snapshot.
pub struct State {
    source: ConfigSource,
    current: ArcSwap<Snapshot>,
    /// The settings that take effect at start only, as the daemon started with them: what a
    /// reload compares with to say which changes wait for a restart (not the previous reload,
    /// which may hold a change that never took effect).
    running: RestartOnly,
    /// The copies of the lists fetched by URL: they outlive snapshots, reloads and refreshes.
    lists: Arc<ListStore>,
    /// One build at a time (a reload, a list update): each starts from the snapshot the one
    /// before swapped in, so that none undoes another.
    building: Mutex<()>,
}

impl State {
    /// Loads the config and builds the first snapshot.
    pub fn new(source: ConfigSource) -> Result<State, ConfigError> {
        let config = source.load()?;
        State::with_config(source, config)
    }

    /// Builds the first snapshot from a config the caller already loaded from `source` (so that
    /// `run` reads its config once); reloads read `source` again.
    pub fn with_config(source: ConfigSource, config: Config) -> Result<State, ConfigError> {
        let lists = Arc::new(ListStore::for_config(&config));
        let snapshot = build_reusing(config, None, &lists)?;
        publish(&snapshot);
        Ok(State {
            source,
            running: RestartOnly::of(&snapshot.config),
            current: ArcSwap::from_pointee(snapshot),
            lists,
            building: Mutex::new(()),
        })
    }

    /// Builds a new snapshot from the running config (its text, as loaded: a list update is no
    /// reload) and the list copies as they are now, and swaps it in: what a good download of a
    /// list calls. A build that fails is logged, and the snapshot serving stays.
    pub fn rebuild_lists(&self) {
        let _one_at_a_time = self.building.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self.load_full();
        let built = Config::parse(old.config.origin.clone()).and_then(|c| build_reusing(c, Some(&old), &self.lists));
        match built {
            Ok(snapshot) => {
                let snapshot = Arc::new(snapshot);
                self.current.store(Arc::clone(&snapshot));
                publish_lists(&snapshot);
                tracing::info!(
                    lists = snapshot.rules.lists.len(),
                    rules = snapshot.rule_count(),
                    "lists rebuilt"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "a list updated, but the rebuild failed; the previous lists keep serving");
            }
        }
    }

    /// Hands the directory of the list copies (`state_dir/lists`, created if need be) to the user
    /// the daemon is about to become (`run --user`), so that it can keep saving copies once it
    /// is no longer root. Only where the config has lists by URL; a failure is a warning.
    pub fn give_lists_to(&self, uid: u32, gid: u32) {
        if self.load().url_lists.is_empty() {
            return;
        }
        let dir = self.lists.dir();
        let given = std::fs::create_dir_all(dir).and_then(|()| std::os::unix::fs::chown(dir, Some(uid), Some(gid)));
        if let Err(e) = given {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot hand the list copies' directory to the daemon's user");
        }
    }

    /// Starts fetching the lists of `urls` (on the current tokio runtime): each URL when due,
    /// every good update rebuilt into a new snapshot. Returns its handle: the caller owns the
    /// task, and stops it at shutdown.
    pub fn start_list_refresher(self: &Arc<State>) -> ListRefresher {
        let (first_round, ready) = watch::channel(false);
        let sources_of = Arc::clone(self);
        let rebuild_of = Arc::clone(self);
        let task = tokio::spawn(refresh::run(
            Arc::clone(&self.lists),
            move || refresh::sources(&sources_of.load().config),
            Arc::new(move || rebuild_of.rebuild_lists()),
            first_round,
        ));
        ListRefresher { task, ready }
    }

    /// Builds the first snapshot from a config the caller loaded (a test's config text, a tool's
    /// own config), without a file to read it from again: a reload parses the same text again.
    pub fn from_config(config: Config) -> Result<State, ConfigError> {
        State::with_config(ConfigSource::Text(config.origin.clone()), config)
    }

    /// The snapshot to read for one query: cheap, lock-free.
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The snapshot as an owned `Arc`, for work that outlives one packet (a forwarded query).
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Reads the config again and swaps in the new snapshot if it builds; otherwise keeps the
    /// current one. Either way the outcome is counted and logged. Settings that only take effect
    /// at start (listeners, threads, cache size, hit log target) are reported if they changed.
    pub fn reload(&self) -> Result<(), ReloadError> {
        let _one_at_a_time = self.building.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self.load_full();
        let built = self
            .source
            .load()
            .and_then(|c| build_reusing(c, Some(&old), &self.lists));
        match built {
            // A config that blocks nothing where the running one blocks: a truncated file, the
            // wrong file, a list emptied by a bad edit. Lifting a ban is done with its window
            // (active_until) or by a restart, never by a reload that looks like any other.
            Ok(snapshot) if old.rules.blocking_rules() > 0 && snapshot.rules.blocking_rules() == 0 => {
                tracing::error!(
                    rules_now = old.rules.blocking_rules(),
                    "reload refused: the new config blocks nothing (no policy blocks a list with rules) while the \
                     running one blocks; the previous config keeps serving. To lift the ban, end it with \
                     active_until, or restart sinkhole with the new config"
                );
                metrics::counter!(crate::metrics::RELOADS, "result" => "refused").increment(1);
                metrics::gauge!(crate::metrics::LAST_RELOAD_OK).set(0.0);
                Err(ReloadError::StopsBlocking)
            }
            Ok(snapshot) => {
                for change in self.running.changes(&RestartOnly::of(&snapshot.config)) {
                    tracing::warn!(
                        setting = change,
                        "changed in the config, takes effect at the next restart"
                    );
                }
                // Swapped in before it is counted and logged: whoever sees "reloaded" (an admin,
                // a script pacing reloads, a test) and asks at once must get the new state.
                let snapshot = Arc::new(snapshot);
                self.current.store(Arc::clone(&snapshot));
                publish(&snapshot);
                // New URLs are fetched at once; the others keep their copies and schedule.
                self.lists.config_changed();
                tracing::info!(
                    lists = snapshot.rules.lists.len(),
                    rules = snapshot.rule_count(),
                    policies = snapshot.rules.policies.len(),
                    "reloaded"
                );
                Ok(())
            }
            Err(e) => {
                // Logged, then counted: whoever sees the count can find the reason in the log.
                tracing::error!(error = %e, "reload failed, the previous config keeps serving");
                metrics::counter!(crate::metrics::RELOADS, "result" => "failed").increment(1);
                metrics::gauge!(crate::metrics::LAST_RELOAD_OK).set(0.0);
                Err(ReloadError::Config(e))
            }
        }
    }
}

/// The handle of the list refresher ([`State::start_list_refresher`]).
pub struct ListRefresher {
    task: tokio::task::JoinHandle<()>,
    ready: watch::Receiver<bool>,
}

impl ListRefresher {
    /// Waits until every URL that had no copy at the start was tried once, or `limit` passed
    /// (`server.list_wait`): start-up never waits on the network longer. Returns whether they
    /// were all tried.
    pub async fn wait_first_round(&mut self, limit: Duration) -> bool {
        let tried = tokio::time::timeout(limit, self.ready.wait_for(|done| *done)).await;
        matches!(tried, Ok(Ok(_)))
    }

    /// Stops it (downloads in flight are dropped; copies on disk are whole, being renamed in).
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Exports a newly built snapshot's figures and warnings.
fn publish(snapshot: &Snapshot) {
    publish_lists(snapshot);
    metrics::counter!(crate::metrics::RELOADS, "result" => "ok").increment(1);
    metrics::gauge!(crate::metrics::LAST_RELOAD_OK).set(1.0);
    metrics::gauge!(crate::metrics::LAST_RELOAD).set(now_unix() as f64);
}

/// Exports the lists' figures and the snapshot's warnings: after a reload, and after a list
/// update (which is not counted as a reload).
fn publish_lists(snapshot: &Snapshot) {
    for list in &snapshot.rules.lists {
        let name = list.name.to_string();
        metrics::gauge!(crate::metrics::LIST_RULES, "list" => name.clone()).set(list.set.len() as f64);
        metrics::gauge!(crate::metrics::LIST_BAD_LINES, "list" => name.clone()).set(list.bad_lines.len() as f64);
        let status = snapshot.url_lists.iter().find(|l| *l.name == *list.name);
        let loaded = status.is_none_or(|s| !s.never_loaded);
        metrics::gauge!(crate::metrics::LIST_LOADED, "list" => name.clone()).set(f64::from(u8::from(loaded)));
        if status.is_some()
            && let Some(config) = snapshot.config.lists.get(&name)
        {
            metrics::gauge!(crate::metrics::LIST_REFRESH, "list" => name.clone()).set(config.refresh().as_secs_f64());
        }
        if let Some(last) = status.and_then(|s| {
            s.urls
                .iter()
                .filter_map(|(_, m)| m.as_ref())
                .map(|m| m.checked_at)
                .max()
        }) {
            metrics::gauge!(crate::metrics::LIST_LAST_SUCCESS, "list" => name).set(last as f64);
        }
    }
    for warning in &snapshot.warnings {
        tracing::warn!(at = %warning.location, "{}", warning.message);
    }
}

/// The settings read once, at start (listeners, threads, cache size, hit log target), as one
/// config gives them.
#[derive(Debug, PartialEq)]
struct RestartOnly {
    listen: Vec<SocketAddr>,
    metrics: Option<SocketAddr>,
    threads: Option<usize>,
    cache: (usize, u64),
    /// The target (a file resolved against the config's directory) and the queue.
    hits: (HitsTarget, usize),
    /// Where URL lists are kept: the store is made once, at start.
    state_dir: PathBuf,
    /// Whether the egress companion runs (some policy has `egress = true`), and its settings:
    /// both read once, when it starts.
    egress: (bool, String),
    /// DoT and DoH listen addresses (their certificate is read again on every reload).
    encrypted: (Vec<SocketAddr>, Vec<SocketAddr>),
}

impl RestartOnly {
    fn of(c: &Config) -> RestartOnly {
        let target = match &c.log.hits {
            HitsTarget::File(p) => HitsTarget::File(c.resolve(p)),
            other => other.clone(),
        };
        RestartOnly {
            listen: c.server.listen.iter().map(|l| *l.get_ref()).collect(),
            metrics: c.server.metrics,
            threads: c.server.threads,
            cache: (c.cache.entries, c.cache.max_bytes.get_ref().0),
            hits: (target, c.log.queue),
            state_dir: c.state_dir(),
            egress: (c.egress_used(), egress_settings(c)),
            encrypted: (
                c.server.tls.iter().map(|l| *l.get_ref()).collect(),
                c.server.https.iter().map(|l| *l.get_ref()).collect(),
            ),
        }
    }

    /// The settings (by config name) that differ in `new`.
    fn changes(&self, new: &RestartOnly) -> Vec<&'static str> {
        let differ = [
            (self.listen != new.listen, "server.listen"),
            (self.metrics != new.metrics, "server.metrics"),
            (self.threads != new.threads, "server.threads"),
            (self.cache != new.cache, "cache size"),
            (self.hits != new.hits, "log.hits"),
            (self.state_dir != new.state_dir, "server.state_dir"),
            (self.egress != new.egress, "egress"),
            (self.encrypted.0 != new.encrypted.0, "server.tls"),
            (self.encrypted.1 != new.encrypted.1, "server.https"),
        ];
        differ
            .into_iter()
            .filter(|(differs, _)| *differs)
            .map(|(_, name)| name)
            .collect()
    }
}

/// `[egress]` as the companion reads it at start, values only (not where they are written).
fn egress_settings(c: &Config) -> String {
    let e = &c.egress;
    format!(
        "{} {} {} {} {} {:?} {} {} {} {}",
        e.table.get_ref(),
        e.set_v4.get_ref(),
        e.set_v6.get_ref(),
        e.min_timeout,
        e.max_timeout,
        e.never_add,
        e.rate,
        e.queue,
        e.dedup_window,
        e.max_names
    )
}

/// Seconds since the Unix epoch, as policy windows count them.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The pool's view of a configured upstream server.
fn server_spec(server: &UpstreamAddr) -> ServerSpec {
    ServerSpec {
        addr: server.addr,
        encryption: match &server.protocol {
            UpstreamProtocol::Plain => Encryption::None,
            UpstreamProtocol::Tls { name } => Encryption::Tls { name: name.clone() },
            UpstreamProtocol::Https { name, path } => Encryption::Https {
                name: name.clone(),
                path: path.clone(),
            },
        },
        label: server.text.clone(),
    }
}

/// The roots encrypted upstreams are checked against: `upstream.ca`'s certificates, or the
/// system's. A CA file that cannot be read or holds no usable certificate is an error at its key.
fn upstream_roots(config: &Config) -> Result<Roots, ConfigError> {
    let Some(ca) = &config.upstream.ca else {
        return Ok(Roots::System);
    };
    let path = config.resolve(ca);
    let at = |message: String| ConfigError::from(config.origin.error(config.keys_span("upstream.ca"), message));
    let pem = std::fs::read(&path).map_err(|e| at(format!("upstream.ca {}: cannot read it: {e}", path.display())))?;
    Roots::from_pem(&pem).map_err(|e| at(format!("upstream.ca {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tracing_subscriber::layer::{Context, SubscriberExt};

    /// At each "reloaded" log event, records the rule count of the snapshot a query would read.
    struct RulesAtLog {
        state: Arc<State>,
        seen: Arc<Mutex<Vec<usize>>>,
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RulesAtLog {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            struct Message(String);
            impl tracing::field::Visit for Message {
                fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                    if field.name() == "message" {
                        self.0 = format!("{value:?}");
                    }
                }
            }
            let mut message = Message(String::new());
            event.record(&mut message);
            if message.0 == "reloaded" {
                let rules = self.state.load().rule_count();
                self.seen.lock().unwrap_or_else(|p| p.into_inner()).push(rules);
            }
        }
    }

    #[test]
    fn a_reload_is_serving_when_it_is_logged() {
        // A script that waits for "reloaded" (or the ok count) and then queries must see the new
        // lists: the log line and the count once came before the swap.
        let dir = std::env::temp_dir().join(format!("sinkhole-state-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("sinkhole.toml");
        let list = dir.join("block.txt");
        std::fs::write(&list, "tiktok.com\n").expect("write the list");
        let text = "[lists.block]\nfiles = [\"block.txt\"]\n[[policy]]\nname = \"staff\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"block\"]\n";
        std::fs::write(&config, text).expect("write the config");
        let state = Arc::new(State::new(ConfigSource::File(config)).expect("the first load"));
        assert_eq!(state.load().rule_count(), 1);
        std::fs::write(&list, "tiktok.com\nfacebook.com\n").expect("rewrite the list");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let probe = RulesAtLog {
            state: Arc::clone(&state),
            seen: Arc::clone(&seen),
        };
        let reloaded = tracing::subscriber::with_default(tracing_subscriber::registry().with(probe), || state.reload());
        let _ = std::fs::remove_dir_all(&dir);
        assert!(reloaded.is_ok(), "{reloaded:?}");
        assert_eq!(
            *seen.lock().expect("not poisoned"),
            [2],
            "the new lists serve when it says so"
        );
    }

    /// Records the `setting` field of every "takes effect at the next restart" warning.
    struct RestartWarnings(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RestartWarnings {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            struct Setting(Option<String>, bool);
            impl tracing::field::Visit for Setting {
                fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                    if field.name() == "setting" {
                        self.0 = Some(value.to_string());
                    }
                }
                fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                    match field.name() {
                        "setting" => self.0 = Some(format!("{value:?}").trim_matches('"').to_string()),
                        "message" => self.1 = format!("{value:?}").contains("next restart"),
                        _ => {}
                    }
                }
            }
            let mut seen = Setting(None, false);
            event.record(&mut seen);
            if let Setting(Some(setting), true) = seen {
                self.0.lock().unwrap_or_else(|p| p.into_inner()).push(setting);
            }
        }
    }

    #[test]
    fn restart_only_changes_are_reported_against_what_is_running() {
        // The daemon listens where it was started until it restarts: every reload while a change is
        // pending says so, and a change put back says nothing.
        let dir = std::env::temp_dir().join(format!("sinkhole-state-restart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("sinkhole.toml");
        let write = |listen: &str, threads: u32, extra: &str| {
            let text =
                format!("[server]\nlisten = [\"{listen}\"]\nthreads = {threads}\n{extra}[log]\nhits = \"off\"\n");
            std::fs::write(&config, text).expect("write the config");
        };
        write("127.0.0.1:5399", 2, "");
        let state = State::new(ConfigSource::File(config.clone())).expect("the first load");
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let dispatch =
            tracing::Dispatch::new(tracing_subscriber::registry().with(RestartWarnings(Arc::clone(&warnings))));
        let reload = |listen: &str, threads: u32, extra: &str| {
            write(listen, threads, extra);
            tracing::dispatcher::with_default(&dispatch, || state.reload()).expect("reloads");
            std::mem::take(&mut *warnings.lock().expect("not poisoned"))
        };
        let changed = reload("127.0.0.1:5400", 2, "");
        let again = reload("127.0.0.1:5400", 2, "");
        let threads_too = reload("127.0.0.1:5400", 4, "");
        let reverted = reload("127.0.0.1:5399", 2, "");
        // The egress companion starts (or not) at start, with its settings of then.
        let egress = reload("127.0.0.1:5399", 2, "[egress]\nrate = 5\n");
        // So do the DoT and DoH listeners (the certificate alone follows reloads).
        let dot = reload(
            "127.0.0.1:5399",
            2,
            "tls = [\"127.0.0.1:8853\"]\ncertificate = \"c.pem\"\nkey = \"k.pem\"\n",
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(changed, ["server.listen"]);
        assert_eq!(
            again,
            ["server.listen"],
            "still pending: the daemon listens on the old address"
        );
        assert_eq!(threads_too, ["server.listen", "server.threads"]);
        assert_eq!(reverted, Vec::<String>::new(), "back to what is running");
        assert_eq!(egress, ["egress"]);
        assert_eq!(dot, ["server.tls"]);
    }
}
