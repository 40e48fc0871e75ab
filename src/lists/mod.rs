//! Block and allow lists: reading list text in the formats operators have, and compiling it into a
//! [`DomainSet`] that answers "does a rule cover this query name?" on the packet path.
//!
//! Owns the line formats (see `parse`), the rule store and the name lookup, and the lists compiled into the
//! binary ([`builtin`]). It must not do I/O (callers fetch files and URLs and hand over text), must not decide
//! verdicts (that is `engine`, which combines block and allow sets with policies), and nothing on the lookup path
//! may allocate, lock or panic, whatever bytes the name holds.
//!
//! # Layout and cost
//! A built set is a handful of flat allocations, none per rule:
//! - `arena`: the normalised text of every rule, back to back (`tiktok.com`, `|x.net^`, `||p16-*.ibyteimg.com^`).
//!   One `String` instead of one per rule saves the 24-byte `String` header and the allocator's overhead per rule.
//! - `spans`: per rule, where its text sits in the arena (u32 offset, u16 length, kind): 8 bytes. A [`RuleId`] is
//!   an index into it.
//! - `names`: a `hashbrown::HashTable<u32>` of rule ids for domain (suffix) and exact rules, keyed by the hash of
//!   the rule's domain: 4 bytes per bucket plus 1 control byte, at a load factor between 7/16 and 7/8.
//! - wildcard rules, grouped by the fixed domain after their last `*` (`ibyteimg.com`), in a small second table.
//!
//! So a domain costs its length, plus 8, plus 6 to 12 bytes of table: about 40 bytes for a typical 20-byte name,
//! no pointer per rule (the unit test `hundred_thousand_domains` measures it). Loading is one pass: each line is
//! parsed in place, lowercased straight into the arena, hashed, and deduplicated against the table.
//!
//! # Lookup
//! The hash of a name is built label by label from the right (foldhash, randomly seeded per set), so hashing
//! `www.tiktok.com` yields on the way the hashes of `com` and `tiktok.com`: every label-boundary suffix is probed
//! for the cost of hashing the name once. Suffixes shorter than the shortest rule (usually the TLD) are not probed,
//! and probing stops once a suffix is longer than the longest rule. Work is at most one table probe per label,
//! with no allocation; the most specific (longest) matching rule wins. Only when no domain or exact rule matches
//! are the wildcard groups probed, the same way, and the patterns that share a matching anchor tried on the name
//! (each at most `pattern x name` steps, so an anchor shared by thousands of wildcards would be slow; TikTok's list
//! has a few per anchor).

mod addrs;
mod glob;
mod parse;
mod rpz;

use std::fmt;
use std::hash::{BuildHasher, Hasher};

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use ipnet::IpNet;

pub(crate) use addrs::{AddrSet, parse_range};
use parse::ParsedRule;
pub(crate) use parse::RuleError;
pub(crate) use parse::RuleKind;
pub(crate) use rpz::{RpzIgnored, RuleAction};

/// Index of a rule inside one [`DomainSet`] (for logs and `explain`). Only meaningful with the set it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleId(u32);

impl RuleId {
    /// The rule's position among the set's distinct rules, in the order they were first added: stable for one
    /// built set, so logs can name a rule without copying its text.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A match: which rule, and how much of the name it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match {
    /// The rule that matched; [`DomainSet::rule`] gives its text.
    pub rule: RuleId,
    /// For a suffix (domain) or exact rule: the length in bytes of the suffix of the queried name that equals the
    /// rule's domain (name `a.b.tiktok.com`, rule `tiktok.com` -> 10). `None` for wildcard rules. The block answer
    /// uses it to point its SOA owner at the matched apex.
    pub apex_len: Option<u8>,
}

/// A list line that was skipped: reported by `sinkhole check` as `source:line: reason: text`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    /// Where the line came from, as the operator named it: a file path, a URL, `builtin:tiktok`, `config`.
    pub source: String,
    /// 1-based line number, so editors can jump to it.
    pub line: usize,
    /// The line as written (trimmed), so the operator recognises it.
    pub text: String,
    /// Why it was skipped: the [`RuleError`]'s message.
    pub reason: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}: {}", self.source, self.line, self.reason, self.text)
    }
}

/// Where one rule's normalised text sits in the arena. Kept to 8 bytes: there is one per rule.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u32,
    len: u16,
    kind: RuleKind,
}

const _: () = assert!(std::mem::size_of::<Span>() == 8);

/// The snapshot shares one set between packet loops on several threads.
const _: () = {
    const fn shared_across_threads<T: Send + Sync>() {}
    shared_across_threads::<DomainSet>();
};

impl Span {
    /// The rule as the operator wrote it, normalised.
    fn text<'a>(&self, arena: &'a str) -> &'a str {
        let start = self.start as usize;
        arena.get(start..start + usize::from(self.len)).unwrap_or_default()
    }

    /// The domain (suffix and exact rules) or pattern (wildcard rules) inside the text, without `||`, `|`, `^`.
    fn body<'a>(&self, arena: &'a str) -> &'a [u8] {
        let (head, foot) = match self.kind {
            RuleKind::Suffix | RuleKind::Range => (0, 0),
            RuleKind::Exact | RuleKind::GlobExact => (1, 1),
            RuleKind::GlobOnLabel => (2, 1),
        };
        let start = self.start as usize;
        let end = (start + usize::from(self.len)).saturating_sub(foot);
        arena.as_bytes().get(start + head..end).unwrap_or_default()
    }
}

/// The wildcard rules that share one anchor domain: `glob_ids[first..first + count]`.
#[derive(Clone, Copy, Debug)]
struct GlobGroup {
    first: u32,
    count: u32,
}

impl GlobGroup {
    fn range(self) -> std::ops::Range<usize> {
        let first = self.first as usize;
        first..first + self.count as usize
    }
}

/// Calls `each(start, hash)` for every label-boundary suffix of `name`, shortest first (`com`, `tiktok.com`,
/// `www.tiktok.com`), where `hash` is that suffix's hash and `start` its offset in `name`. Stops when `each`
/// returns false. Build and lookup both hash through here, so a rule's hash is the one a query computes.
fn for_each_suffix(state: &RandomState, name: &[u8], mut each: impl FnMut(usize, u64) -> bool) {
    let mut hasher = state.build_hasher();
    let mut end = name.len();
    loop {
        let head = name.get(..end).unwrap_or_default();
        let start = head.iter().rposition(|&b| b == b'.').map_or(0, |dot| dot + 1);
        hasher.write(head.get(start..).unwrap_or_default());
        if !each(start, hasher.finish()) || start == 0 {
            return;
        }
        end = start - 1;
    }
}

/// The hash of a whole name, as [`for_each_suffix`] computes it for its last suffix.
fn name_hash(state: &RandomState, name: &[u8]) -> u64 {
    let mut hash = 0;
    for_each_suffix(state, name, |_, h| {
        hash = h;
        true
    });
    hash
}

/// Suffixes a lookup remembers for the wildcard half: a name's suffixes no longer than the longest anchor are
/// as many as that anchor's labels, plus one; past this, the lookup hashes the name a second time instead.
const ANCHOR_ROOM: usize = 8;

/// Collects rules from list text and inline config, then [`build`](Self::build)s the immutable [`DomainSet`].
///
/// Reload builds a fresh one off the hot path; nothing is shared with the set being served.
pub struct DomainSetBuilder {
    /// Normalised rule text, as in [`DomainSet`].
    arena: String,
    /// One per distinct rule, as in [`DomainSet`].
    spans: Vec<Span>,
    /// Domain and exact rules by domain hash; doubles as the duplicate check while loading.
    names: HashTable<u32>,
    /// Ids of wildcard rules, grouped by anchor only at `build`.
    globs: Vec<u32>,
    /// Wildcard rules by the hash of their text: the duplicate check for `globs`, dropped at `build`.
    seen_globs: HashTable<u32>,
    /// Length of the longest domain or exact rule: lookups skip suffixes longer than this.
    max_name_len: usize,
    /// Length of the shortest domain or exact rule: lookups skip suffixes shorter than this (usually the TLD).
    min_name_len: usize,
    /// The seed of every hash in the set; random, so query names cannot be chosen to collide.
    hash_state: RandomState,
    /// Address ranges (`ip = [...]`), each a rule whose text is the range.
    addrs: addrs::AddrSetBuilder,
    /// Rules whose action is not the policy's answer (RPZ lists), by rule id.
    actions: hashbrown::HashMap<u32, RuleAction>,
    /// What RPZ texts held that is not applied.
    rpz_ignored: RpzIgnored,
}

impl Default for DomainSetBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DomainSetBuilder {
    /// An empty builder with a fresh random hash seed.
    pub fn new() -> Self {
        Self {
            arena: String::new(),
            spans: Vec::new(),
            names: HashTable::new(),
            globs: Vec::new(),
            seen_globs: HashTable::new(),
            max_name_len: 0,
            min_name_len: usize::MAX,
            hash_state: RandomState::default(),
            addrs: addrs::AddrSetBuilder::default(),
            actions: hashbrown::HashMap::new(),
            rpz_ignored: RpzIgnored::default(),
        }
    }

    /// Parses a whole list text (any accepted format, mixed), adds the good rules, returns the bad lines.
    ///
    /// `source` is what errors name (a file path, `builtin:tiktok`, `config`). A bad line is skipped, never fatal:
    /// one typo must not leave a network unprotected. A byte-order mark at the start is ignored.
    ///
    /// An RPZ zone (a `$ORIGIN` line or an SOA record among its first lines) is read as one: see `rpz` for what
    /// each record does here.
    pub fn add_text(&mut self, source: &str, text: &str) -> Vec<BadLine> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if rpz::looks_like_zone(text) {
            return self.add_zone(source, text);
        }
        self.reserve(text);
        let mut bad = Vec::new();
        for (index, line) in text.lines().enumerate() {
            if let Err(error) = parse::parse_line(line, &mut |rule| self.insert(rule)) {
                bad.push(BadLine {
                    source: source.to_owned(),
                    line: index + 1,
                    text: line.trim().to_owned(),
                    reason: error.to_string(),
                });
            }
        }
        bad
    }

    /// Whether [`add_text`](Self::add_text) reads `text` as an RPZ zone (a `$ORIGIN` line or an SOA record among
    /// its first lines) rather than line by line: for tools and the fuzz targets, which check each format's
    /// own rules.
    pub fn is_rpz(text: &str) -> bool {
        rpz::looks_like_zone(text.strip_prefix('\u{feff}').unwrap_or(text))
    }

    /// Reads an RPZ zone text: names and ranges with their actions, bad records, and what is not applied.
    fn add_zone(&mut self, source: &str, text: &str) -> Vec<BadLine> {
        self.reserve(text);
        let mut reader = rpz::Reader::default();
        let mut bad = Vec::new();
        reader.read(
            text,
            &mut |rule| {
                let (id, action) = match rule {
                    rpz::RpzRule::Name { name, wildcard, action } => {
                        let (kind, body) = if wildcard {
                            (RuleKind::GlobExact, format!("*.{name}"))
                        } else {
                            (RuleKind::Exact, name)
                        };
                        (self.insert_id(ParsedRule { kind, body: &body })?, action)
                    }
                    rpz::RpzRule::Range { net, action } => (self.insert_range(net)?, action),
                };
                if let Some(action) = action {
                    self.actions
                        .entry(id.0)
                        .and_modify(|first| *first = first.merge(action))
                        .or_insert(action);
                }
                Ok(())
            },
            &mut |line, text: &str, reason| {
                bad.push(BadLine {
                    source: source.to_owned(),
                    line,
                    text: text.to_owned(),
                    reason,
                });
            },
        );
        self.rpz_ignored.add(&reader.ignored);
        bad
    }

    /// Makes room for every line of `text` being a rule, so that a big list is not rehashed while it loads:
    /// growing the table rehashes every rule in it, which would cost as much again as the load. What comment
    /// lines leave unused is given back by `build`.
    fn reserve(&mut self, text: &str) {
        let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
        self.arena.reserve(text.len());
        self.spans.reserve(lines);
        let Self {
            arena,
            spans,
            names,
            hash_state,
            ..
        } = self;
        names.reserve(lines, |&id| {
            spans
                .get(id as usize)
                .map_or(0, |s| name_hash(hash_state, s.body(arena)))
        });
    }

    /// Adds one rule written in any accepted line format (for inline `domains = [...]` in the config).
    ///
    /// A blank string, a comment or hosts boilerplate is [`RuleError::NoRule`]: in a config array it is a mistake.
    /// A hosts line with several names adds them all.
    pub fn add_rule(&mut self, rule: &str) -> Result<(), RuleError> {
        let mut added = false;
        parse::parse_line(rule, &mut |parsed| {
            added = true;
            self.insert(parsed)
        })?;
        if added { Ok(()) } else { Err(RuleError::NoRule) }
    }

    /// Adds an address range (host bits cleared): an answer whose A/AAAA address it holds is blocked as a name
    /// rule would block the name asked. Its text (`203.0.113.0/24`) is the rule logs and `explain` name. The
    /// same range twice is kept once.
    pub fn add_range(&mut self, net: IpNet) -> Result<(), RuleError> {
        self.insert_range(net).map(drop)
    }

    /// [`add_range`](Self::add_range), returning the rule's id (the first one's, for a range already there).
    fn insert_range(&mut self, net: IpNet) -> Result<RuleId, RuleError> {
        use std::fmt::Write as _;
        let net = net.trunc();
        let start = self.arena.len();
        // Writing to a String cannot fail.
        let _ = write!(self.arena, "{net}");
        let fits = (
            u32::try_from(start),
            u16::try_from(self.arena.len() - start),
            u32::try_from(self.arena.len()),
            u32::try_from(self.spans.len()),
        );
        let (Ok(offset), Ok(len), Ok(_), Ok(id)) = fits else {
            self.arena.truncate(start);
            return Err(RuleError::TooLarge);
        };
        match self.addrs.insert(net, RuleId(id)) {
            Ok(()) => {
                self.spans.push(Span {
                    start: offset,
                    len,
                    kind: RuleKind::Range,
                });
                Ok(RuleId(id))
            }
            Err(existing) => {
                self.arena.truncate(start);
                Ok(existing)
            }
        }
    }

    /// Stores one parsed rule, lowercased, unless the same rule is already there.
    fn insert(&mut self, rule: ParsedRule<'_>) -> Result<(), RuleError> {
        self.insert_id(rule).map(drop)
    }

    /// [`insert`](Self::insert), returning the rule's id (the first one's, for a rule already there).
    fn insert_id(&mut self, rule: ParsedRule<'_>) -> Result<RuleId, RuleError> {
        let start = self.arena.len();
        let (head, foot) = match rule.kind {
            RuleKind::Suffix | RuleKind::Range => ("", ""),
            RuleKind::Exact | RuleKind::GlobExact => ("|", "^"),
            RuleKind::GlobOnLabel => ("||", "^"),
        };
        self.arena.push_str(head);
        self.arena.push_str(rule.body);
        self.arena.push_str(foot);
        if let Some(text) = self.arena.get_mut(start..) {
            text.make_ascii_lowercase();
        }
        let fits = (
            u32::try_from(start),
            u16::try_from(self.arena.len() - start),
            u32::try_from(self.arena.len()),
            u32::try_from(self.spans.len()),
        );
        let (Ok(offset), Ok(len), Ok(_), Ok(id)) = fits else {
            self.arena.truncate(start);
            return Err(RuleError::TooLarge);
        };
        let span = Span {
            start: offset,
            len,
            kind: rule.kind,
        };
        match self.index(span, id) {
            None => {
                self.spans.push(span);
                Ok(RuleId(id))
            }
            Some(existing) => {
                self.arena.truncate(start);
                Ok(RuleId(existing))
            }
        }
    }

    /// Enters a rule whose text is already in the arena into the lookup (or duplicate) table, as `id`. The id of
    /// the same rule if it is already there, and then nothing changed.
    fn index(&mut self, span: Span, id: u32) -> Option<u32> {
        let Self {
            arena,
            spans,
            names,
            globs,
            seen_globs,
            max_name_len,
            min_name_len,
            hash_state,
            addrs: _,
            actions: _,
            rpz_ignored: _,
        } = self;
        let arena: &str = arena;
        let spans: &[Span] = spans;
        let hash_state: &RandomState = hash_state;
        match span.kind {
            RuleKind::Suffix | RuleKind::Exact => {
                let body = span.body(arena);
                let hash = name_hash(hash_state, body);
                let same = |other: &u32| {
                    spans
                        .get(*other as usize)
                        .is_some_and(|o| o.kind == span.kind && o.body(arena) == body)
                };
                let rehash = |other: &u32| {
                    spans
                        .get(*other as usize)
                        .map_or(0, |o| name_hash(hash_state, o.body(arena)))
                };
                match names.entry(hash, same, rehash) {
                    Entry::Occupied(entry) => return Some(*entry.get()),
                    Entry::Vacant(slot) => {
                        slot.insert(id);
                    }
                }
                *max_name_len = (*max_name_len).max(body.len());
                *min_name_len = (*min_name_len).min(body.len());
            }
            // Ranges are entered by `add_range`, never here.
            RuleKind::Range => return Some(id),
            RuleKind::GlobOnLabel | RuleKind::GlobExact => {
                let text = span.text(arena);
                let hash = hash_state.hash_one(text);
                let same = |other: &u32| spans.get(*other as usize).is_some_and(|o| o.text(arena) == text);
                let rehash = |other: &u32| {
                    spans
                        .get(*other as usize)
                        .map_or(0, |o| hash_state.hash_one(o.text(arena)))
                };
                match seen_globs.entry(hash, same, rehash) {
                    Entry::Occupied(entry) => return Some(*entry.get()),
                    Entry::Vacant(slot) => {
                        slot.insert(id);
                    }
                }
                globs.push(id);
            }
        }
        None
    }

    /// Freezes the rules into a [`DomainSet`]: wildcard rules are grouped by anchor, spare capacity is released.
    pub fn build(self) -> DomainSet {
        let Self {
            mut arena,
            mut spans,
            mut names,
            mut globs,
            seen_globs: _,
            max_name_len,
            min_name_len,
            hash_state,
            addrs,
            actions,
            rpz_ignored,
        } = self;
        arena.shrink_to_fit();
        let mut actions: Vec<(u32, RuleAction)> = actions.into_iter().collect();
        actions.sort_unstable_by_key(|&(id, _)| id);
        spans.shrink_to_fit();
        // `add_text` reserved a slot per line; comment lines and duplicates leave some unused.
        names.shrink_to_fit(|&id| {
            spans
                .get(id as usize)
                .map_or(0, |s| name_hash(&hash_state, s.body(&arena)))
        });
        let anchor_of = |id: u32| {
            spans
                .get(id as usize)
                .and_then(|s| glob::anchor(s.body(&arena)))
                .unwrap_or_default()
        };
        // Stable, so rules sharing an anchor are tried in the order they were added.
        globs.sort_by(|&a, &b| anchor_of(a).cmp(anchor_of(b)));
        let mut glob_groups = HashTable::new();
        let mut max_anchor_len = 0;
        let mut first = 0;
        for group in globs.chunk_by(|&a, &b| anchor_of(a) == anchor_of(b)) {
            let anchor = group.first().map_or(&[][..], |&id| anchor_of(id));
            max_anchor_len = max_anchor_len.max(anchor.len());
            // Both fit: there are fewer wildcard rules than rules, and rule ids are u32.
            let entry = GlobGroup {
                first: u32::try_from(first).unwrap_or(u32::MAX),
                count: u32::try_from(group.len()).unwrap_or(0),
            };
            glob_groups.insert_unique(name_hash(&hash_state, anchor), entry, |g: &GlobGroup| {
                globs
                    .get(g.first as usize)
                    .map_or(0, |&id| name_hash(&hash_state, anchor_of(id)))
            });
            first += group.len();
        }
        DomainSet {
            arena,
            spans,
            names,
            glob_groups,
            glob_ids: globs.into_boxed_slice(),
            max_name_len,
            min_name_len,
            max_anchor_len,
            hash_state,
            addrs: addrs.build(),
            actions: actions.into_boxed_slice(),
            rpz_ignored,
        }
    }
}

/// A compiled list: the rules of one or more list texts, matched against query names. Immutable once built,
/// `Send + Sync`, shared by every packet loop through the snapshot.
pub struct DomainSet {
    /// Normalised text of every rule, back to back; rules point into it by offset.
    arena: String,
    /// Per rule (indexed by [`RuleId`]): where its text is and how it matches.
    spans: Vec<Span>,
    /// Domain and exact rules, by the hash of their domain.
    names: HashTable<u32>,
    /// Wildcard rule groups, by the hash of their anchor domain.
    glob_groups: HashTable<GlobGroup>,
    /// Wildcard rule ids, grouped by anchor; `glob_groups` holds ranges into it.
    glob_ids: Box<[u32]>,
    /// Length of the longest domain or exact rule: longer suffixes cannot match and are not probed.
    max_name_len: usize,
    /// Length of the shortest domain or exact rule: shorter suffixes (the TLD, mostly) are not probed.
    min_name_len: usize,
    /// Length of the longest wildcard anchor, for the same reason.
    max_anchor_len: usize,
    /// The seed every hash in the set was built with; lookups must hash with it too.
    hash_state: RandomState,
    /// Address ranges, matched against answers' A/AAAA records rather than names.
    addrs: AddrSet,
    /// The rules whose action is not the policy's answer (RPZ lists), by rule id, sorted; empty for other lists,
    /// which then pay one length check per match.
    actions: Box<[(u32, RuleAction)]>,
    /// What RPZ texts held that is not applied, for `check`.
    rpz_ignored: RpzIgnored,
}

/// One rule of a set as [`DomainSet::rule_views`] shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RuleView<'a> {
    /// How it matches.
    pub(crate) kind: RuleKind,
    /// The domain or pattern without `||`, `|`, `^`; a range's prefix (`203.0.113.0/24`).
    pub(crate) body: &'a str,
    /// The rule as [`DomainSet::rule`] names it (`||p16-*.ibyteimg.com^`), for reports.
    pub(crate) text: &'a str,
    /// Its own answer, where its list gave it one (RPZ); None: the policy's.
    pub(crate) action: Option<RuleAction>,
}

impl Default for DomainSet {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for DomainSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainSet")
            .field("rules", &self.len())
            .field("wildcard_rules", &self.glob_ids.len())
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

impl DomainSet {
    /// A set with no rules: what a policy without lists holds.
    pub fn empty() -> Self {
        DomainSetBuilder::new().build()
    }

    /// The most specific rule covering `name`, if any.
    ///
    /// `name`: the query name as lowercase ASCII bytes, dotted, no trailing dot (`www.tiktok.com`; the root is
    /// `b""`, which nothing matches). Does not allocate and does not panic on any input; work is one table probe
    /// per label, plus the wildcard patterns anchored on the name's suffixes when no domain rule matches. Names
    /// over 255 bytes cannot be on the wire and match nothing.
    pub fn lookup(&self, name: &[u8]) -> Option<Match> {
        if name.is_empty() || name.len() > usize::from(u8::MAX) {
            return None;
        }
        let globs = !self.glob_ids.is_empty();
        let reach = if globs {
            self.max_name_len.max(self.max_anchor_len)
        } else {
            self.max_name_len
        };
        let arena = self.arena.as_str();
        let mut found = None;
        // Suffixes short enough to be a wildcard anchor, with their hashes, for the wildcard half below: it is
        // only needed when no domain rule matches, and then the walk need not hash the name again.
        let mut anchors = [(0usize, 0u64); ANCHOR_ROOM];
        let mut anchor_count = 0;
        // One walk over the suffixes, shortest first; a later hit is more specific and replaces an earlier one.
        for_each_suffix(&self.hash_state, name, |start, hash| {
            let suffix_len = name.len() - start;
            if suffix_len > reach {
                return false;
            }
            if globs && suffix_len <= self.max_anchor_len {
                if let Some(slot) = anchors.get_mut(anchor_count) {
                    *slot = (start, hash);
                }
                anchor_count += 1;
            }
            if !(self.min_name_len..=self.max_name_len).contains(&suffix_len) {
                return true;
            }
            let suffix = name.get(start..).unwrap_or_default();
            let whole = start == 0;
            let hit = self.names.find(hash, |&id| {
                self.spans
                    .get(id as usize)
                    .is_some_and(|span| (whole || span.kind == RuleKind::Suffix) && span.body(arena) == suffix)
            });
            if let Some(&id) = hit {
                found = Some(Match {
                    rule: RuleId(id),
                    apex_len: u8::try_from(suffix_len).ok(),
                });
            }
            true
        });
        if found.is_some() || !globs {
            return found;
        }
        // A domain rule beats any wildcard; else the longest anchor with a matching pattern wins.
        if anchor_count > ANCHOR_ROOM {
            let mut wildcard = None;
            for_each_suffix(&self.hash_state, name, |start, hash| {
                if name.len() - start > self.max_anchor_len {
                    return false;
                }
                let suffix = name.get(start..).unwrap_or_default();
                wildcard = self.wildcard_at(name, suffix, hash).or(wildcard);
                true
            });
            return wildcard;
        }
        anchors[..anchor_count].iter().rev().find_map(|&(start, hash)| {
            let suffix = name.get(start..).unwrap_or_default();
            self.wildcard_at(name, suffix, hash)
        })
    }

    /// The first wildcard rule anchored at `suffix` (of `name`, with hash `hash`) that matches `name`.
    fn wildcard_at(&self, name: &[u8], suffix: &[u8], hash: u64) -> Option<Match> {
        let arena = self.arena.as_str();
        let group = self.glob_groups.find(hash, |g| {
            self.glob_ids
                .get(g.first as usize)
                .and_then(|&id| self.spans.get(id as usize))
                .and_then(|s| glob::anchor(s.body(arena)))
                == Some(suffix)
        })?;
        let ids = self.glob_ids.get(group.range())?;
        ids.iter().find_map(|&id| {
            let span = self.spans.get(id as usize)?;
            let pattern = span.body(arena);
            let hit = name.ends_with(glob::tail(pattern))
                && match span.kind {
                    RuleKind::GlobExact => glob::matches_exact(pattern, name),
                    _ => glob::matches_on_label(pattern, name),
                };
            hit.then_some(Match {
                rule: RuleId(id),
                apex_len: None,
            })
        })
    }

    /// The list's address ranges (`ip = [...]`), for answers' A/AAAA records; their rules' text is the range.
    pub(crate) fn addrs(&self) -> &AddrSet {
        &self.addrs
    }

    /// The action of a rule, where it is not the policy's answer (RPZ lists: NXDOMAIN, NODATA, a redirect, or an
    /// exception). No allocation; a plain list answers None at once.
    pub(crate) fn action(&self, id: RuleId) -> Option<RuleAction> {
        if self.actions.is_empty() {
            return None;
        }
        self.actions
            .binary_search_by_key(&id.0, |&(rule, _)| rule)
            .ok()
            .and_then(|i| self.actions.get(i))
            .map(|&(_, action)| action)
    }

    /// Whether a rule is an exception of the list itself (RPZ `rpz-passthru`): what it matches, the list does
    /// not block.
    pub(crate) fn is_passthru(&self, id: RuleId) -> bool {
        self.action(id) == Some(RuleAction::Passthru)
    }

    /// What the list's RPZ texts held that is not applied (nsdname, nsip and client-ip triggers, ...).
    pub(crate) fn rpz_ignored(&self) -> &RpzIgnored {
        &self.rpz_ignored
    }

    /// Number of address-range rules (a part of [`len`](Self::len)).
    pub fn range_count(&self) -> usize {
        self.addrs.len()
    }

    /// The rule as the operator wrote it in normalised form (`tiktok.com`, `||p16-tiktok-*.ibyteimg.com^`,
    /// `|x.net^`): lowercase, no trailing dot, `||domain^`, `*.domain` and hosts entries all written `domain`.
    /// An id from another set may name another rule, or none: then the text is empty.
    pub fn rule(&self, id: RuleId) -> &str {
        self.spans.get(id.index()).map_or("", |span| span.text(&self.arena))
    }

    /// Every rule with its kind, its body (the domain or pattern without `||`, `|`, `^`; a range's
    /// prefix) and its own action (RPZ lists), for `sinkhole export`, which must write each kind
    /// and action as another server reads it. Off the packet path.
    pub(crate) fn rule_views(&self) -> impl Iterator<Item = RuleView<'_>> + '_ {
        (0u32..).zip(self.spans.iter()).map(|(id, span)| RuleView {
            kind: span.kind,
            body: std::str::from_utf8(span.body(&self.arena)).unwrap_or_default(),
            text: span.text(&self.arena),
            action: self.action(RuleId(id)),
        })
    }

    /// Its address ranges that block (an RPZ passthru range, a hole in a wider one, does not):
    /// what the egress companion publishes to the firewall as intervals. Off the packet path.
    pub(crate) fn blocking_ranges(&self) -> impl Iterator<Item = IpNet> + '_ {
        (0u32..)
            .zip(self.spans.iter())
            .filter(|(_, span)| span.kind == RuleKind::Range)
            .filter(|&(id, _)| !matches!(self.action(RuleId(id)), Some(RuleAction::Passthru)))
            .filter_map(|(_, span)| span.text(&self.arena).parse().ok())
    }

    /// Number of distinct rules (a rule covered by a broader one still counts: it costs nothing to keep).
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the set has no rules at all.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Heap memory the set holds, in bytes: for the list-size gauge, and to keep the per-domain cost honest.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.spans.capacity() * std::mem::size_of::<Span>()
            + self.names.allocation_size()
            + self.glob_groups.allocation_size()
            + self.glob_ids.len() * std::mem::size_of::<u32>()
            + self.addrs.heap_bytes()
            + self.actions.len() * std::mem::size_of::<(u32, RuleAction)>()
    }
}

/// Names of the lists compiled into the binary, for `builtin:NAME` list sources and `sinkhole check`.
const BUILTIN_NAMES: &[&str] = &["tiktok", "encrypted-dns-bypass", "facebook", "instagram"];

/// The lists compiled into the binary, by name: `builtin("tiktok")` is `blocklists/tiktok.txt`, so a fresh
/// install blocks TikTok, and the ways around the resolver (`encrypted-dns-bypass`), without fetching anything.
/// `facebook` and `instagram` ship for policies that opt in; blocklists/README.md sources every entry.
pub(crate) fn builtin(name: &str) -> Option<&'static str> {
    match name {
        "tiktok" => Some(include_str!("../../blocklists/tiktok.txt")),
        "encrypted-dns-bypass" => Some(include_str!("../../blocklists/encrypted-dns-bypass.txt")),
        "facebook" => Some(include_str!("../../blocklists/facebook.txt")),
        "instagram" => Some(include_str!("../../blocklists/instagram.txt")),
        _ => None,
    }
}

/// The names [`builtin`] knows, for help texts and config validation.
pub(crate) fn builtin_names() -> &'static [&'static str] {
    BUILTIN_NAMES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> DomainSet {
        let mut builder = DomainSetBuilder::new();
        let bad = builder.add_text("test", text);
        assert!(bad.is_empty(), "{bad:?}");
        builder.build()
    }

    /// An RPZ zone goes through `add_text` like any list: exact names, `*.name` below a name only, actions by
    /// rule (A and AAAA of one name merged into one redirect), passthru rules kept as the list's exceptions, and
    /// `rpz-ip` triggers as address ranges.
    #[test]
    fn rpz_zones_compile_into_rules_with_actions() {
        let s = set("$TTL 60\n$ORIGIN rpz.test.\n@ SOA ns. h. 1 2 3 4 5\n\
                     tiktok.com CNAME .\n*.tiktok.com CNAME *.\nok.tiktok.com CNAME rpz-passthru.\n\
                     page.test A 192.0.2.53\npage.test AAAA 2001:db8::53\ngarden.test CNAME walled.example.\n\
                     32.7.2.0.192.rpz-ip CNAME .\nx.rpz-nsdname CNAME .\n");
        let action = |name: &str| set_action(&s, name);
        assert_eq!(hit(&s, "tiktok.com"), Some(("|tiktok.com^", Some(10))));
        assert_eq!(action("tiktok.com"), Some(RuleAction::Nxdomain));
        assert_eq!(hit(&s, "a.b.tiktok.com"), Some(("|*.tiktok.com^", None)));
        assert_eq!(action("a.b.tiktok.com"), Some(RuleAction::Nodata));
        assert_eq!(action("ok.tiktok.com"), Some(RuleAction::Passthru));
        assert!(s.lookup(b"ok.tiktok.com").is_some_and(|m| s.is_passthru(m.rule)));
        assert_eq!(
            action("page.test"),
            Some(RuleAction::Redirect {
                v4: Some("192.0.2.53".parse().expect("v4")),
                v6: Some("2001:db8::53".parse().expect("v6")),
            })
        );
        assert_eq!(hit(&s, "www.page.test"), None, "an RPZ name is that name only");
        assert!(s.lookup(b"garden.test").is_some());
        assert_eq!(action("garden.test"), None, "a walled garden gets the policy's answer");
        let range = s
            .addrs()
            .lookup("192.0.2.7".parse().expect("ip"))
            .expect("rpz-ip range");
        assert_eq!(s.rule(range), "192.0.2.7/32");
        assert_eq!(s.action(range), Some(RuleAction::Nxdomain));
        assert_eq!(s.rpz_ignored().nsdname, 1);
        // A plain list has no actions and costs one length check.
        let plain = set("tiktok.com\n");
        let m = plain.lookup(b"tiktok.com").expect("match");
        assert_eq!(plain.action(m.rule), None);
        assert!(plain.rpz_ignored().lines().is_empty());
    }

    fn set_action(s: &DomainSet, name: &str) -> Option<RuleAction> {
        s.lookup(name.as_bytes()).and_then(|m| s.action(m.rule))
    }

    /// A match as the rule's text and the apex length, for table assertions.
    type Hit<'a> = Option<(&'a str, Option<u8>)>;

    /// The matched rule's text and apex length, for table assertions.
    fn hit<'a>(set: &'a DomainSet, name: &str) -> Hit<'a> {
        set.lookup(name.as_bytes()).map(|m| (set.rule(m.rule), m.apex_len))
    }

    const MIXED: &str = "\
# TikTok core
tiktok.com
0.0.0.0 TIKTOKV.COM. musical.ly
*.tiktokcdn.com
||byteoversea.com^
|x.net^
||p16-tiktok-*.ibyteimg.com^
||v*.tiktokcdn-eu.com^
|exact*.glob.example^
deep.example
www.deep.example
";

    #[test]
    fn lookup_table() {
        let set = set(MIXED);
        let cases: &[(&str, Hit<'_>)] = &[
            ("tiktok.com", Some(("tiktok.com", Some(10)))),
            ("www.tiktok.com", Some(("tiktok.com", Some(10)))),
            ("a.b.tiktok.com", Some(("tiktok.com", Some(10)))),
            ("nottiktok.com", None),
            ("tiktok.com.evil.net", None),
            ("com", None),
            ("api16-normal-c-useast1a.tiktokv.com", Some(("tiktokv.com", Some(11)))),
            ("musical.ly", Some(("musical.ly", Some(10)))),
            ("tiktokcdn.com", Some(("tiktokcdn.com", Some(13)))),
            ("v16m.tiktokcdn.com", Some(("tiktokcdn.com", Some(13)))),
            ("log.byteoversea.com", Some(("byteoversea.com", Some(15)))),
            ("x.net", Some(("|x.net^", Some(5)))),
            ("www.x.net", None),
            (
                "p16-tiktok-va.ibyteimg.com",
                Some(("||p16-tiktok-*.ibyteimg.com^", None)),
            ),
            (
                "cdn.p16-tiktok-va.ibyteimg.com",
                Some(("||p16-tiktok-*.ibyteimg.com^", None)),
            ),
            ("p16-sign-va.ibyteimg.com", None),
            ("ibyteimg.com", None),
            ("v16m.tiktokcdn-eu.com", Some(("||v*.tiktokcdn-eu.com^", None))),
            ("p16.tiktokcdn-eu.com", None),
            ("exact1.glob.example", Some(("|exact*.glob.example^", None))),
            ("a.exact1.glob.example", None),
            ("deep.example", Some(("deep.example", Some(12)))),
            ("a.deep.example", Some(("deep.example", Some(12)))),
            ("a.www.deep.example", Some(("www.deep.example", Some(16)))),
            ("", None),
            ("tiktok.com.", None),
            (".", None),
        ];
        for &(name, want) in cases {
            assert_eq!(hit(&set, name), want, "{name:?}");
        }
    }

    #[test]
    fn wildcards_anchored_deeper_than_the_lookup_remembers_still_match() {
        // Anchors of 9 and 10 labels: a name under them has more short suffixes than the lookup keeps for the
        // wildcard half (ANCHOR_ROOM), so it walks the name again; the longest anchor still wins, and a domain
        // rule still beats both.
        let deep = set("||x*.b.c.d.e.f.g.h.i.example^\n||x*.a.b.c.d.e.f.g.h.i.example^\nz.example\n");
        assert_eq!(
            hit(&deep, "x1.a.b.c.d.e.f.g.h.i.example"),
            Some(("||x*.a.b.c.d.e.f.g.h.i.example^", None))
        );
        assert_eq!(
            hit(&deep, "x1.b.c.d.e.f.g.h.i.example"),
            Some(("||x*.b.c.d.e.f.g.h.i.example^", None))
        );
        assert_eq!(hit(&deep, "y1.a.b.c.d.e.f.g.h.i.example"), None);
        let with_domain = set("||x*.a.b.c.d.e.f.g.h.i.example^\nb.c.d.e.f.g.h.i.example\n");
        assert_eq!(
            hit(&with_domain, "x1.a.b.c.d.e.f.g.h.i.example"),
            Some(("b.c.d.e.f.g.h.i.example", Some(23)))
        );
    }

    #[test]
    fn rules_are_normalised_and_deduplicated() {
        let set = set(
            "tiktok.com\n||TikTok.com^\n*.tiktok.com\n0.0.0.0 tiktok.com.\n|tiktok.com^\n\
                       ||a*.b.example^\n||A*.B.example^\n|a*.b.example^\n",
        );
        let mut rules: Vec<&str> = (0..set.len())
            .map(|i| set.rule(RuleId(u32::try_from(i).unwrap())))
            .collect();
        rules.sort_unstable();
        assert_eq!(
            rules,
            ["tiktok.com", "|a*.b.example^", "|tiktok.com^", "||a*.b.example^"]
        );
        assert_eq!(set.len(), 4);
        // Both the suffix rule and the exact rule cover the apex; the name below only the suffix rule.
        assert_eq!(hit(&set, "tiktok.com").map(|h| h.1), Some(Some(10)));
        assert_eq!(hit(&set, "www.tiktok.com"), Some(("tiktok.com", Some(10))));
        assert_eq!(set.rule(RuleId(999)), "");
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let mut builder = DomainSetBuilder::new();
        let text = "\u{feff}tiktok.com\n@@||partner.example^\nbücher.de\n||x.com^$important\n\ntiktokv.com\r\n";
        let bad = builder.add_text("lists/tiktok.txt", text);
        let lines: Vec<usize> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [2, 3, 4]);
        assert_eq!(
            bad[0].to_string(),
            format!("lists/tiktok.txt:2: {}: @@||partner.example^", RuleError::Exception)
        );
        assert_eq!(bad[1].reason, RuleError::NonAscii("bücher.de".into()).to_string());
        let set = builder.build();
        assert_eq!(set.len(), 2);
        assert!(set.lookup(b"www.tiktokv.com").is_some());
    }

    #[test]
    fn add_rule_takes_one_inline_rule() {
        let mut builder = DomainSetBuilder::new();
        assert_eq!(builder.add_rule("||Intranet-Blocked.example^"), Ok(()));
        assert_eq!(builder.add_rule("0.0.0.0 a.example b.example"), Ok(()));
        assert_eq!(builder.add_rule("# nothing"), Err(RuleError::NoRule));
        assert_eq!(builder.add_rule("127.0.0.1 localhost"), Err(RuleError::NoRule));
        assert_eq!(builder.add_rule("@@||x.example^"), Err(RuleError::Exception));
        let set = builder.build();
        assert_eq!(set.len(), 3);
        assert!(set.lookup(b"x.intranet-blocked.example").is_some());
        assert!(set.lookup(b"b.example").is_some());
    }

    #[test]
    fn empty_set_matches_nothing() {
        let set = DomainSet::empty();
        assert!(set.is_empty());
        assert_eq!(set.len(), 0);
        assert_eq!(set.lookup(b"tiktok.com"), None);
        assert_eq!(set.lookup(b""), None);
    }

    /// Deterministic pseudo-random bytes (no extra crate): a 64-bit LCG.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
        fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[(self.next() as usize) % from.len()]
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let set = set(MIXED);
        let mut rng = Lcg(7);
        let alphabet = [b'a', b'.', b'*', b'-', 0, 0xff, b'k', b't', b'i', b'o', b'c', b'm'];
        for _ in 0..20_000 {
            let len = (rng.next() % 300) as usize;
            let name: Vec<u8> = (0..len).map(|_| rng.pick(&alphabet)).collect();
            let _ = set.lookup(&name);
        }
        for name in [vec![b'.'; 255], vec![b'a'; 255], b"a.".repeat(128), vec![0xff; 256]] {
            assert_eq!(set.lookup(&name), None);
        }
    }

    #[test]
    fn lookup_agrees_with_a_naive_suffix_scan() {
        // Small alphabet so that random names often hit random rules.
        let mut rng = Lcg(42);
        let random_name = |rng: &mut Lcg| {
            let labels = 1 + rng.next() % 4;
            let parts: Vec<String> = (0..labels)
                .map(|_| (0..1 + rng.next() % 2).map(|_| rng.pick(&['a', 'b'])).collect())
                .collect();
            parts.join(".")
        };
        let mut text = String::new();
        let mut suffix_rules = std::collections::HashSet::new();
        let mut exact_rules = std::collections::HashSet::new();
        for i in 0..40 {
            let name = random_name(&mut rng);
            if i % 3 == 0 {
                text.push_str(&format!("|{name}^\n"));
                exact_rules.insert(name);
            } else {
                text.push_str(&format!("{name}\n"));
                suffix_rules.insert(name);
            }
        }
        let set = set(&text);
        for _ in 0..2_000 {
            let name = random_name(&mut rng);
            // Most specific first: the whole name, then each suffix after a dot.
            let starts = std::iter::once(0).chain(name.match_indices('.').map(|(i, _)| i + 1));
            let want = starts
                .filter_map(|start| {
                    let suffix = &name[start..];
                    let covered = suffix_rules.contains(suffix) || (start == 0 && exact_rules.contains(suffix));
                    covered.then_some(u8::try_from(suffix.len()).unwrap())
                })
                .next();
            let got = set.lookup(name.as_bytes()).and_then(|m| m.apex_len);
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn hundred_thousand_domains() {
        const N: usize = 100_000;
        let mut text = String::with_capacity(N * 32);
        for i in 0..N {
            // Typical list names: 20 to 28 bytes.
            text.push_str(&format!("host{i}.zone{}.example{}.com\n", i % 997, i % 13));
        }
        let mut builder = DomainSetBuilder::new();
        assert!(builder.add_text("synthetic", &text).is_empty());
        let set = builder.build();
        assert_eq!(set.len(), N);
        assert_eq!(
            hit(&set, "host4242.zone254.example4.com"),
            Some(("host4242.zone254.example4.com", Some(29)))
        );
        assert!(set.lookup(b"www.host99999.zone299.example3.com").is_some());
        assert_eq!(set.lookup(b"host100000.zone301.example4.com"), None);
        assert_eq!(set.lookup(b"zone254.example4.com"), None);
        let text_bytes = text.len() - N; // without the newlines
        let per_domain = set.heap_bytes() as f64 / N as f64;
        eprintln!(
            "{N} domains, {:.1} bytes of name each: {} heap bytes, {per_domain:.1} per domain",
            text_bytes as f64 / N as f64,
            set.heap_bytes()
        );
        assert!(per_domain < 64.0, "{per_domain} bytes per domain");
    }

    #[test]
    fn allow_example_parses_and_opens_only_its_names() {
        let mut builder = DomainSetBuilder::new();
        let text = include_str!("../../blocklists/allow-example.txt");
        let bad = builder.add_text("blocklists/allow-example.txt", text);
        assert!(bad.is_empty(), "{bad:#?}");
        let allow = builder.build();
        assert!(allow.lookup(b"ads.tiktok.com").is_some());
        assert!(allow.lookup(b"developers.tiktok.com").is_some());
        assert_eq!(allow.lookup(b"www.tiktok.com"), None);
        assert_eq!(allow.lookup(b"x.ads.tiktok.com"), None);
    }

    #[test]
    fn builtin_names_and_lists_agree() {
        for name in builtin_names() {
            assert!(builtin(name).is_some(), "{name}");
        }
        assert_eq!(builtin("nope"), None);
    }

    /// Builds one builtin list, failing on any line it would skip: a shipped list has no bad line.
    fn builtin_set(name: &str) -> DomainSet {
        let mut builder = DomainSetBuilder::new();
        let text = builtin(name).unwrap_or_else(|| panic!("builtin {name} is missing"));
        let bad = builder.add_text(&format!("builtin:{name}"), text);
        assert!(bad.is_empty(), "builtin:{name}: {bad:#?}");
        builder.build()
    }

    #[test]
    fn every_builtin_list_parses_with_no_bad_line() {
        for name in builtin_names() {
            let set = builtin_set(name);
            assert!(!set.is_empty(), "builtin:{name} has no rule");
        }
    }

    #[test]
    fn lark_exception_example_parses_cleanly() {
        let mut builder = DomainSetBuilder::new();
        let text = include_str!("../../blocklists/lark-exceptions-example.txt");
        let bad = builder.add_text("blocklists/lark-exceptions-example.txt", text);
        assert!(bad.is_empty(), "{bad:#?}");
        let allow = builder.build();
        for name in [
            "larksuite.com",
            "www.larksuite.com",
            "feishu.cn",
            "larksuite.com.ttdns2.com",
        ] {
            assert!(allow.lookup(name.as_bytes()).is_some(), "{name}");
        }
        // The shared ByteDance hosts stay commented out: the example opens nothing TikTok needs.
        for name in ["log.byteoversea.com", "dig.bdurl.net", "tiktok.com"] {
            assert_eq!(allow.lookup(name.as_bytes()), None, "{name}");
        }
    }

    #[test]
    fn instagram_carries_no_name_facebook_or_whatsapp_needs() {
        let instagram = builtin_set("instagram");
        let facebook = builtin_set("facebook");
        for name in [
            "instagram.com",
            "i.instagram.com",
            "scontent-cdg4-1.cdninstagram.com",
            "ig.me",
        ] {
            assert!(
                instagram.lookup(name.as_bytes()).is_some(),
                "{name} blocked by instagram"
            );
        }
        for name in [
            "www.facebook.com",
            "graph.facebook.com",
            "connect.facebook.net",
            "static.xx.fbcdn.net",
            "lookaside.fbsbx.com",
            "whatsapp.com",
            "web.whatsapp.com",
            "mmg.whatsapp.net",
        ] {
            assert_eq!(
                instagram.lookup(name.as_bytes()),
                None,
                "instagram must not block {name}"
            );
        }
        for name in [
            "www.facebook.com",
            "graph.facebook.com",
            "static.xx.fbcdn.net",
            "www.messenger.com",
        ] {
            assert!(facebook.lookup(name.as_bytes()).is_some(), "{name} blocked by facebook");
        }
        for name in ["whatsapp.com", "mmg.whatsapp.net", "instagram.com", "meta.com"] {
            assert_eq!(facebook.lookup(name.as_bytes()), None, "facebook must not block {name}");
        }
    }

    #[test]
    fn encrypted_dns_bypass_blocks_resolvers_not_their_owners() {
        let set = builtin_set("encrypted-dns-bypass");
        for name in [
            "use-application-dns.net",
            "mask.icloud.com",
            "mask-h2.icloud.com",
            "dns.google",
            "dns.google.com",
            "chrome.cloudflare-dns.com",
            "mozilla.cloudflare-dns.com",
            "one.one.one.one",
            "dns.quad9.net",
            "abc123.dns.nextdns.io",
            "adblock.dns.mullvad.net",
        ] {
            assert!(set.lookup(name.as_bytes()).is_some(), "{name} should be blocked");
        }
        for name in [
            "google.com",
            "www.google.com",
            "google",
            "cloudflare.com",
            "icloud.com",
            "www.icloud.com",
            "p123-caldav.icloud.com",
            "apple.com",
            "mozilla.org",
            "quad9.net",
            "www.quad9.net",
            "adguard.com",
            "nextdns.io",
            "opendns.com",
            "mullvad.net",
        ] {
            assert_eq!(set.lookup(name.as_bytes()), None, "{name} must not be blocked");
        }
    }

    #[test]
    fn builtin_tiktok_parses_cleanly_and_blocks_the_app() {
        let mut builder = DomainSetBuilder::new();
        let bad = builder.add_text("builtin:tiktok", builtin("tiktok").unwrap_or_default());
        assert!(bad.is_empty(), "{:#?}", bad);
        let set = builder.build();
        assert!(set.len() > 50, "{} rules", set.len());
        let blocked = [
            "tiktok.com",
            "www.tiktok.com",
            "m.tiktok.com",
            "api16-normal-c-useast1a.tiktokv.com",
            "log16-normal-c-useast1a.tiktokv.com",
            "v16m.tiktokcdn.com",
            "p16-sign-va.tiktokcdn.com",
            "p16-tiktok-va.ibyteimg.com",
            "p16-va-tiktok.ibyteimg.com",
            "lf16-tiktok-common.ibytedtos.com",
            // European data residency (Project Clover) and the US programme.
            "api16-normal-no1a.tiktokv.eu",
            "api16-normal-useastred.tiktokv.eu",
            "tnc16-normal-ie.tiktokv.eu",
            "mcs-ie.tiktokw.eu",
            "v16m.tiktokcdn-eu.com",
            "sf16-website-login.neutral.tiktokcdn-eu.com",
            "api16-normal-useast5.tiktokv.us",
            "mssdk.tiktokw.us",
            "p16-sign.tiktokcdn-us.com",
            "sf16-website-login.neutral.ttwstatic.com",
            "api2.musical.ly",
            "v24.muscdn.com",
            // TikTok-only names on shared infrastructure (CNAME targets).
            "p16-tiktokcdn-com.akamaized.net",
            "api.tiktokv.com.edgekey.net",
            "analytics.tiktok.com.ttdns2.com",
            // The app's own ways around the resolver: HTTPDNS and QUIC proxies.
            "dig.bdurl.net",
            "direct-http.quic-tiktok-proxy-i18n-v3.useast2a.byteglb.com",
            "direct-http.quic-webcast-proxy-i18n-v3.useast2a.byteglb.com",
            "direct.quic-webcast-core-proxy-i18n-v3.useast2a.byteglb.com",
            "direct-http.quic-proxy-useast4-v3.useast4.byteglb.com",
            "direct.quic-core-proxy-gcpsg-v3.gcpsg.byteglb.com",
        ];
        for name in blocked {
            assert!(set.lookup(name.as_bytes()).is_some(), "{name} should be blocked");
        }
        let allowed = [
            "example.com",
            "akamaized.net",
            "a248.e.akamaized.net",
            "edgekey.net",
            "edgesuite.net",
            "fastly.net",
            "cloudflare.net",
            "cdn.cloudflare.net",
            "googleapis.com",
            "app-measurement.com",
            "apps.googleusercontent.com",
            "appsflyersdk.com",
            "ibyteimg.com",
            "ibytedtos.com",
            "sf16-muse-va.ibytedtos.com",
            "larksuite.com.ttdns2.com",
            "larksuite.com",
            "feishu.cn",
            "byteglb.com",
            "bdurl.net",
            "capcut.com",
            "lemon8-app.com",
            "nottiktok.com",
            "tiktok.com.example.org",
        ];
        for name in allowed {
            assert_eq!(
                set.lookup(name.as_bytes()).map(|m| set.rule(m.rule)),
                None,
                "{name} must not be blocked"
            );
        }
    }
}

/// Properties of the suffix match, on random rules and names (proptest): what the table tests above show for
/// chosen names must hold for any.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Labels from a small alphabet, so that random rules and names share labels often: the interesting names are
    /// a rule, under one, beside one, or a rule with text glued on, and with a large alphabet they would be rare.
    const LABELS: &[&str] = &["a", "b", "ab", "ba", "a-b", "x_1", "a0"];

    /// 1 to `max` labels: a name as a list of labels, most specific first.
    fn labels(max: usize) -> impl Strategy<Value = Vec<&'static str>> {
        prop::collection::vec(prop::sample::select(LABELS), 1..=max)
    }

    /// One suffix rule as an operator may write it (plain, adblock, `*.`, hosts; any case) for `domain`.
    fn written_as(domain: &str, format: u8, upper: bool) -> String {
        let domain = if upper {
            domain.to_ascii_uppercase()
        } else {
            domain.to_owned()
        };
        match format % 4 {
            0 => domain,
            1 => format!("||{domain}^"),
            2 => format!("*.{domain}"),
            _ => format!("0.0.0.0 {domain}"),
        }
    }

    /// A random rule set: (domain labels, exact?, line format, uppercase?) per rule.
    type Rules = Vec<(Vec<&'static str>, bool, u8, bool)>;

    fn rules() -> impl Strategy<Value = Rules> {
        prop::collection::vec(
            (labels(3), prop::bool::weighted(0.2), any::<u8>(), any::<bool>()),
            1..12,
        )
    }

    fn build(rules: &Rules) -> DomainSet {
        let mut text = String::new();
        for (domain, exact, format, upper) in rules {
            let domain = domain.join(".");
            let line = if *exact {
                format!("|{domain}^")
            } else {
                written_as(&domain, *format, *upper)
            };
            text.push_str(&line);
            text.push('\n');
        }
        let mut builder = DomainSetBuilder::new();
        let bad = builder.add_text("property", &text);
        assert!(bad.is_empty(), "{bad:?}");
        builder.build()
    }

    /// The answer worked out the slow way: the longest label-boundary suffix of `name` that a suffix rule names,
    /// or the whole name if an exact rule names it; as the apex length [`DomainSet::lookup`] reports.
    fn brute_force(rules: &Rules, name: &str) -> Option<u8> {
        let covers = |suffix: &str, whole: bool| {
            rules
                .iter()
                .any(|(domain, exact, _, _)| domain.join(".") == suffix && (whole || !exact))
        };
        let starts = std::iter::once(0).chain(name.match_indices('.').map(|(i, _)| i + 1));
        starts
            .filter(|&start| covers(&name[start..], start == 0))
            .map(|start| u8::try_from(name.len() - start).expect("test names are short"))
            .next()
    }

    /// Names near `rule`: the rule with one label changed (a sibling), its parent, the rule with text glued to its
    /// first label (`xa.b` beside `a.b`: not a label boundary), and the rule with a label after it (`a.b.x`).
    fn neighbours(rule: &[&str], other: &str) -> Vec<String> {
        let mut near = Vec::new();
        if rule[0] != other {
            let mut sibling = rule.to_vec();
            sibling[0] = other;
            near.push(sibling.join("."));
        }
        if rule.len() > 1 {
            near.push(rule[1..].join("."));
        }
        near.push(format!("x{}", rule.join(".")));
        near.push(format!("{}.x", rule.join(".")));
        near
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// One rule: every name under it is blocked, with the rule's domain as the apex; no sibling, parent,
        /// name that merely ends in the same text, or name that has the rule as a prefix, is.
        #[test]
        fn a_rule_blocks_every_subdomain_and_no_sibling(
            rule in labels(3),
            format in any::<u8>(),
            upper in any::<bool>(),
            below in prop::collection::vec(labels(4), 1..8),
            other in prop::sample::select(LABELS),
        ) {
            let domain = rule.join(".");
            let mut builder = DomainSetBuilder::new();
            prop_assert!(builder.add_text("property", &written_as(&domain, format, upper)).is_empty());
            let set = builder.build();
            let apex = u8::try_from(domain.len()).ok();
            prop_assert_eq!(set.lookup(domain.as_bytes()).map(|m| m.apex_len), Some(apex));
            for prefix in &below {
                let name = format!("{}.{domain}", prefix.join("."));
                prop_assert_eq!(set.lookup(name.as_bytes()).map(|m| m.apex_len), Some(apex), "{}", name);
            }
            for name in neighbours(&rule, other) {
                prop_assert_eq!(set.lookup(name.as_bytes()), None, "{}", name);
            }
        }

        /// Many rules, suffix and exact: a name is matched exactly when some rule covers it, and the match is the
        /// most specific covering rule. Names are drawn under, beside and around the rules, and at random.
        #[test]
        fn lookup_is_the_most_specific_covering_rule(
            rules in rules(),
            prefixes in prop::collection::vec(labels(3), 1..6),
            other in prop::sample::select(LABELS),
            random in prop::collection::vec(labels(5), 1..10),
        ) {
            let set = build(&rules);
            let mut names: Vec<String> = random.iter().map(|n| n.join(".")).collect();
            for ((rule, _, _, _), prefix) in rules.iter().zip(prefixes.iter().cycle()) {
                names.push(rule.join("."));
                names.push(format!("{}.{}", prefix.join("."), rule.join(".")));
                names.extend(neighbours(rule, other));
            }
            for name in &names {
                let got = set.lookup(name.as_bytes()).map(|m| m.apex_len);
                let want = brute_force(&rules, name).map(Some);
                prop_assert_eq!(got, want, "{}", name);
                // Whatever matched names a rule that really covers the name.
                if let Some(m) = set.lookup(name.as_bytes()) {
                    let text = set.rule(m.rule);
                    let domain = text.trim_start_matches('|').trim_end_matches('^');
                    prop_assert!(
                        name == domain || (!text.starts_with('|') && name.ends_with(&format!(".{domain}"))),
                        "{} matched by {}", name, text
                    );
                }
            }
        }
    }
}
