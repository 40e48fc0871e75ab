//! Talking to nftables: the JSON of `nft -j` through the `nftables` crate, one `nft -j -f -` per
//! batch, which the kernel applies as one transaction (all of it or none).
//!
//! Why JSON through `nft` rather than netlink in process: the `nftables` crate (MIT/Apache) is
//! kept up with nft's schema and serialises exactly what `nft -j list` prints, so a test reads
//! back what was written in the same words; the netlink crate that covers sets (rustables) is
//! GPL-3.0 and would change this crate's licence. The cost, a process per batch, is paid at most
//! once a second, off the packet path.
//!
//! Only elements are ever added or deleted, in sets the firewall's configuration made: the table,
//! its sets and its rules are never created, flushed or changed here.

use std::borrow::Cow;
use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::{Elem, Expression, NamedExpression, Prefix};
use nftables::helper::{self, NftablesError};
use nftables::schema::{Element, NfListObject, Nftables};
use nftables::types::NfFamily;

/// Where the elements go: `inet TABLE` and its two sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sets {
    /// The table (family inet).
    pub(crate) table: String,
    /// The IPv4 set.
    pub(crate) v4: String,
    /// The IPv6 set.
    pub(crate) v6: String,
}

/// One address to add, with the answer's TTL, clamped, as its element's timeout (seconds).
/// A list's ranges go in through [`Sets::sync_ranges_batch`] instead, without a timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The address.
    pub(crate) ip: IpAddr,
    /// Seconds until the kernel removes it.
    pub(crate) timeout: u32,
}

impl Entry {
    fn expression(&self) -> Expression<'static> {
        Expression::Named(NamedExpression::Elem(Elem {
            val: Box::new(Expression::String(self.ip.to_string().into())),
            timeout: Some(self.timeout),
            expires: None,
            comment: None,
            counter: None,
        }))
    }
}

fn prefix(net: IpNet) -> Expression<'static> {
    let net = net.trunc();
    if net.prefix_len() == net.max_prefix_len() {
        return Expression::String(net.addr().to_string().into());
    }
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(Expression::String(net.addr().to_string().into())),
        len: u32::from(net.prefix_len()),
    }))
}

impl Sets {
    fn element(&self, v4: bool, elem: Vec<Expression<'static>>) -> NfListObject<'static> {
        NfListObject::Element(Element {
            family: NfFamily::INet,
            table: Cow::Owned(self.table.clone()),
            name: Cow::Owned(if v4 { self.v4.clone() } else { self.v6.clone() }),
            elem: elem.into(),
        })
    }

    /// One transaction that adds `entries`, each to the set of its family (one `add element`
    /// command per set that gets any).
    pub(crate) fn add_batch(&self, entries: &[Entry]) -> Nftables<'static> {
        let mut batch = Batch::new();
        for v4 in [true, false] {
            let elems: Vec<_> = entries
                .iter()
                .filter(|e| e.ip.is_ipv4() == v4)
                .map(Entry::expression)
                .collect();
            if !elems.is_empty() {
                batch.add(self.element(v4, elems));
            }
        }
        batch.to_nftables()
    }

    /// One transaction that brings a list's ranges from `installed` to `wanted`: deletes the
    /// ranges no longer wanted, adds the new ones. The path for a list's `ip = [...]` ranges:
    /// called with what a reload's lists say.
    pub(crate) fn sync_ranges_batch(&self, installed: &[IpNet], wanted: &[IpNet]) -> Option<Nftables<'static>> {
        let gone: Vec<IpNet> = installed.iter().filter(|n| !wanted.contains(n)).copied().collect();
        let new: Vec<IpNet> = wanted.iter().filter(|n| !installed.contains(n)).copied().collect();
        if gone.is_empty() && new.is_empty() {
            return None;
        }
        let mut batch = Batch::new();
        for v4 in [true, false] {
            let family = |nets: &[IpNet]| -> Vec<Expression<'static>> {
                nets.iter()
                    .filter(|n| matches!(n, IpNet::V4(_)) == v4)
                    .map(|n| prefix(*n))
                    .collect()
            };
            let (gone, new) = (family(&gone), family(&new));
            if !gone.is_empty() {
                batch.delete(self.element(v4, gone));
            }
            if !new.is_empty() {
                batch.add(self.element(v4, new));
            }
        }
        Some(batch.to_nftables())
    }
}

/// Why a change could not be made: the `reason` label of `sinkhole_egress_nft_failures_total`
/// and what the log says to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// `nft` is not installed (or not on PATH).
    NftMissing,
    /// The process may not change nftables: it lacks CAP_NET_ADMIN.
    Permission,
    /// The table or a set does not exist.
    MissingSet,
    /// nft refused the change (an element that overlaps a range already in the set, a set of
    /// another type or without the `timeout` flag).
    Rejected,
    /// nft could not be run, or said something unreadable.
    Exec,
}

impl Failure {
    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Failure::NftMissing => "nft_missing",
            Failure::Permission => "permission",
            Failure::MissingSet => "missing_set",
            Failure::Rejected => "rejected",
            Failure::Exec => "exec",
        }
    }

    /// What the operator should do about it.
    pub(crate) fn advice(self) -> &'static str {
        match self {
            Failure::NftMissing => "install nftables (the `nft` command) on this host",
            Failure::Permission => {
                "sinkhole needs CAP_NET_ADMIN to change nftables sets: see README \"Egress companion\" \
                 (AmbientCapabilities=CAP_NET_ADMIN in the systemd unit)"
            }
            Failure::MissingSet => {
                "the nftables table or set does not exist: load deploy/nftables/sinkhole.nft (or your own) \
                 with `nft -f`; sinkhole does not create the firewall's table"
            }
            Failure::Rejected => {
                "nft refused the change: check that the sets are `flags interval, timeout` of type \
                 ipv4_addr / ipv6_addr"
            }
            Failure::Exec => "nft could not be run",
        }
    }
}

/// A failed nft run: why, and nft's own words.
#[derive(Debug, thiserror::Error)]
#[error("{}: {detail}", .failure.advice())]
pub(crate) struct NftError {
    /// The kind.
    pub(crate) failure: Failure,
    /// What nft (or the system) said.
    pub(crate) detail: String,
}

fn classify(error: NftablesError) -> NftError {
    let (failure, detail) = match error {
        NftablesError::NftExecution { inner, .. } if inner.kind() == io::ErrorKind::NotFound => {
            (Failure::NftMissing, inner.to_string())
        }
        NftablesError::NftExecution { inner, .. } => (Failure::Exec, inner.to_string()),
        NftablesError::NftFailed { stderr, .. } => {
            let failure = if stderr.contains("Operation not permitted") {
                Failure::Permission
            } else if stderr.contains("No such file or directory") {
                Failure::MissingSet
            } else {
                Failure::Rejected
            };
            (failure, stderr.trim().to_string())
        }
        other => (Failure::Exec, other.to_string()),
    };
    NftError { failure, detail }
}

/// Applies one batch as one transaction (`nft -j -f -`). Blocks while nft runs: call it from a
/// blocking thread.
pub(crate) fn apply(batch: &Nftables<'_>) -> Result<(), NftError> {
    let payload = serde_json::to_string(batch).map_err(|e| NftError {
        failure: Failure::Exec,
        detail: e.to_string(),
    })?;
    helper::apply_ruleset_raw(&payload, helper::DEFAULT_NFT, helper::DEFAULT_ARGS)
        .map(drop)
        .map_err(classify)
}

/// Checks that a set exists and takes elements with timeouts (`nft -j list set inet TABLE SET`).
/// Blocks while nft runs.
pub(crate) fn check_set(table: &str, set: &str) -> Result<(), NftError> {
    let args = ["list", "set", "inet", table, set];
    let listed = helper::get_current_ruleset_raw(helper::DEFAULT_NFT, args).map_err(classify)?;
    let value: serde_json::Value = serde_json::from_str(&listed).map_err(|e| NftError {
        failure: Failure::Exec,
        detail: e.to_string(),
    })?;
    let flags = value["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|object| object.get("set"))
        .and_then(|set| set.get("flags"))
        .and_then(|flags| flags.as_array())
        .map(|flags| flags.iter().filter_map(|f| f.as_str()).collect::<Vec<_>>())
        .unwrap_or_default();
    if flags.contains(&"timeout") && flags.contains(&"interval") {
        Ok(())
    } else {
        Err(NftError {
            failure: Failure::Rejected,
            detail: format!("set inet {table} {set} has flags {flags:?}; it needs `flags interval, timeout`"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets() -> Sets {
        Sets {
            table: "sinkhole".into(),
            v4: "blocked_v4".into(),
            v6: "blocked_v6".into(),
        }
    }

    #[test]
    fn one_batch_adds_each_address_to_its_family_with_its_timeout() {
        let entry = |ip: &str, timeout| Entry {
            ip: ip.parse().unwrap(),
            timeout,
        };
        let entries = [
            entry("203.0.113.7", 300),
            entry("2001:db8::7", 60),
            entry("192.0.2.1", 5),
        ];
        let json = serde_json::to_value(sets().add_batch(&entries)).unwrap();
        let elem = |v: &str, timeout: u32| serde_json::json!({"elem": {"val": v, "timeout": timeout, "expires": null, "comment": null, "counter": null}});
        assert_eq!(
            json,
            serde_json::json!({"nftables": [
                {"add": {"element": {"family": "inet", "table": "sinkhole", "name": "blocked_v4", "elem": [
                    elem("203.0.113.7", 300), elem("192.0.2.1", 5),
                ]}}},
                {"add": {"element": {"family": "inet", "table": "sinkhole", "name": "blocked_v6", "elem": [
                    elem("2001:db8::7", 60),
                ]}}},
            ]})
        );
    }

    #[test]
    fn a_batch_of_one_family_touches_one_set() {
        let json = serde_json::to_value(sets().add_batch(&[Entry {
            ip: "2001:db8::1".parse().unwrap(),
            timeout: 5,
        }]))
        .unwrap();
        let commands = json["nftables"].as_array().unwrap();
        assert_eq!(commands.len(), 1);
        assert_eq!(commands[0]["add"]["element"]["name"], "blocked_v6");
    }

    #[test]
    fn ranges_sync_deletes_what_went_and_adds_what_came_as_intervals() {
        let nets = |list: &[&str]| list.iter().map(|n| n.parse().unwrap()).collect::<Vec<IpNet>>();
        let installed = nets(&["198.51.100.0/24", "2001:db8:1::/48"]);
        let wanted = nets(&["198.51.100.0/24", "203.0.113.0/25", "192.0.2.9/32"]);
        let json = serde_json::to_value(sets().sync_ranges_batch(&installed, &wanted).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"nftables": [
                {"add": {"element": {"family": "inet", "table": "sinkhole", "name": "blocked_v4", "elem": [
                    {"prefix": {"addr": "203.0.113.0", "len": 25}}, "192.0.2.9",
                ]}}},
                {"delete": {"element": {"family": "inet", "table": "sinkhole", "name": "blocked_v6", "elem": [
                    {"prefix": {"addr": "2001:db8:1::", "len": 48}},
                ]}}},
            ]})
        );
        assert!(sets().sync_ranges_batch(&wanted, &wanted).is_none());
    }

    #[test]
    fn nft_errors_are_told_apart_by_what_nft_says() {
        let failed = |stderr: &str| NftablesError::NftFailed {
            program: "nft".into(),
            hint: String::new(),
            stdout: String::new(),
            stderr: stderr.into(),
        };
        assert_eq!(
            classify(failed("Error: Could not process rule: Operation not permitted")).failure,
            Failure::Permission
        );
        assert_eq!(
            classify(failed("Error: Could not process rule: No such file or directory")).failure,
            Failure::MissingSet
        );
        assert_eq!(
            classify(failed("Error: interval overlaps with an existing one")).failure,
            Failure::Rejected
        );
        let missing = NftablesError::NftExecution {
            program: "nft".into(),
            inner: io::Error::from(io::ErrorKind::NotFound),
        };
        assert_eq!(classify(missing).failure, Failure::NftMissing);
    }
}
