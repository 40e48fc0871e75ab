//! Who the daemon runs as: the one place that changes the process's identity.
//!
//! A resolver needs root for one thing only, binding port 53 (and, if configured so, opening a hit log or reading
//! a config that only root may touch). `sinkhole run --user NAME` does those as root and then becomes NAME for
//! good, before the first query is answered: [`Identity::assume`] sets the supplementary groups to NAME's group
//! alone, then the group, then the user, and checks that root cannot be taken back. `sinkhole run` as root without
//! `--user` refuses to start ([`refuse_root`]) unless told `--allow-root`: a DNS daemon reading packets from a
//! whole network has no business keeping root by accident.
//!
//! CAP_NET_ADMIN is the one capability beyond binding that the daemon may need: the egress companion runs `nft` to
//! add elements to the firewall's sets, and `nft` inherits it through the ambient set (deploy/sinkhole.service
//! grants it). [`limit_net_admin`] gives it up at start, before any thread exists, unless some policy has
//! `egress = true`: a daemon that publishes nothing must not be able to rewrite the firewall. `--user` drops every
//! capability with root, CAP_NET_ADMIN included (a thread's capabilities do not survive setuid, and the threads
//! are running by then): with egress, grant the capability the way the systemd unit does instead.
//!
//! The identity calls go through `nix` (safe wrappers of getpwnam_r, getgrnam_r, setgroups, setgid, setuid), so
//! nothing here is `unsafe`. glibc applies setgid and setuid to every thread of the process (the tokio runtime's,
//! the hit log writer's, the UDP workers'), and [`Identity::assume`] checks that each thread did change, from
//! `/proc/self/task`. It must not be called anywhere but at start, between binding and serving.

use std::fmt;
use std::fs;

use nix::unistd::{Gid, Group, Uid, User, getresgid, getresuid, setgid, setgroups, setuid};

/// Why the daemon cannot take on, or keep, the identity it was asked for. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// `--user` names nobody this system knows.
    #[error("--user {0}: no such user on this system (`getent passwd {0}` lists it when it exists)")]
    NoSuchUser(String),
    /// `--group` names no group this system knows.
    #[error("--group {0}: no such group on this system (`getent group {0}` lists it when it exists)")]
    NoSuchGroup(String),
    /// The user or group database could not be read.
    #[error("cannot look up {what}: {cause}")]
    Lookup {
        /// `user NAME` or `group NAME`.
        what: String,
        /// The cause; in the message itself rather than a `source`, so that it is printed once.
        cause: nix::Error,
    },
    /// A step of the switch failed: the process was not allowed to change its identity.
    #[error(
        "cannot {step} ({cause}): switching to another user needs root (or CAP_SETUID and CAP_SETGID); \
         started as an unprivileged user already, run without --user"
    )]
    Switch {
        /// What was being done, e.g. `set the group id to 65534`.
        step: String,
        /// The cause; in the message itself rather than a `source`, so that it is printed once.
        cause: nix::Error,
    },
    /// After the switch, the process could still become root again: it must not serve.
    #[error("after switching to {0}, the process could still become root again; refusing to serve")]
    RootRegained(Identity),
    /// After the switch, some thread of the process still runs under another identity.
    #[error("after switching to {identity}, thread {task} still runs as {found}; refusing to serve")]
    ThreadNotSwitched {
        /// The identity asked for.
        identity: Identity,
        /// The thread's id (a directory of /proc/self/task).
        task: String,
        /// Its `Uid:` and `Gid:` lines.
        found: String,
    },
    /// The capability sets could not be read or changed.
    #[error("cannot {step}: {cause}")]
    Capability {
        /// What was being done, e.g. `give up CAP_NET_ADMIN`.
        step: &'static str,
        /// The cause, in the message itself.
        cause: String,
    },
    /// `sinkhole run` as root, told neither `--user` nor `--allow-root`.
    #[error(
        "refusing to run as root: pass --user NAME to drop to that user once the sockets are bound (e.g. \
         --user nobody), or --allow-root to run as root anyway (not recommended); or start sinkhole as an \
         unprivileged user that holds CAP_NET_BIND_SERVICE, as deploy/sinkhole.service does"
    )]
    RootUnasked,
}

/// Gives up CAP_NET_ADMIN (effective, permitted, inheritable and ambient sets) unless `needed` (some policy has
/// `egress = true`), so that only a daemon that publishes to nftables can change the firewall. Acts on the calling
/// thread, and the threads it starts later inherit the result: call it at start, before the runtime and the
/// workers exist. A process that does not hold the capability has nothing to give up.
pub fn limit_net_admin(needed: bool) -> Result<(), PrivilegeError> {
    use caps::{CapSet, Capability};
    if needed {
        return Ok(());
    }
    let failed = |step| {
        move |cause: caps::errors::CapsError| PrivilegeError::Capability {
            step,
            cause: cause.to_string(),
        }
    };
    let held = caps::has_cap(None, CapSet::Permitted, Capability::CAP_NET_ADMIN)
        .map_err(failed("read the permitted capabilities"))?;
    let ambient = caps::has_cap(None, CapSet::Ambient, Capability::CAP_NET_ADMIN)
        .map_err(failed("read the ambient capabilities"))?;
    if !held && !ambient {
        return Ok(());
    }
    // Ambient first: the kernel keeps a capability ambient only while it is permitted and inheritable.
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::drop(None, set, Capability::CAP_NET_ADMIN).map_err(failed("give up CAP_NET_ADMIN"))?;
    }
    Ok(())
}

/// A user and group to run as, looked up by name at start (so that a misspelt name fails before anything is
/// bound, not after).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user's name, for messages.
    pub user: String,
    /// Its id.
    pub uid: Uid,
    /// The group's name, for messages.
    pub group: String,
    /// Its id: the process's group and its only supplementary group.
    pub gid: Gid,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "user {} ({}), group {} ({})",
            self.user, self.uid, self.group, self.gid
        )
    }
}

impl Identity {
    /// Looks up `user` and `group` (names, or numeric ids of entries in the user and group databases).
    /// Without `group`, the user's primary group.
    pub fn lookup(user: &str, group: Option<&str>) -> Result<Identity, PrivilegeError> {
        let lookup_failed = |what: &str, name: &str| {
            let what = format!("{what} {name}");
            move |cause| PrivilegeError::Lookup { what, cause }
        };
        let by_name = User::from_name(user).map_err(lookup_failed("user", user))?;
        let found = match (by_name, user.parse::<u32>()) {
            (Some(found), _) => Some(found),
            (None, Ok(uid)) => User::from_uid(Uid::from_raw(uid)).map_err(lookup_failed("user", user))?,
            (None, Err(_)) => None,
        };
        let found = found.ok_or_else(|| PrivilegeError::NoSuchUser(user.to_owned()))?;
        let group = match group {
            Some(name) => {
                let by_name = Group::from_name(name).map_err(lookup_failed("group", name))?;
                let group = match (by_name, name.parse::<u32>()) {
                    (Some(group), _) => Some(group),
                    (None, Ok(gid)) => Group::from_gid(Gid::from_raw(gid)).map_err(lookup_failed("group", name))?,
                    (None, Err(_)) => None,
                };
                group.ok_or_else(|| PrivilegeError::NoSuchGroup(name.to_owned()))?
            }
            None => {
                let primary = found.gid.to_string();
                Group::from_gid(found.gid)
                    .map_err(lookup_failed("group", &primary))?
                    .ok_or(PrivilegeError::NoSuchGroup(primary))?
            }
        };
        Ok(Identity {
            user: found.name,
            uid: found.uid,
            group: group.name,
            gid: group.gid,
        })
    }

    /// Becomes this identity for good, every thread of the process: supplementary groups set to the group alone,
    /// then the group id, then the user id (real, effective and saved: there is no way back), in that order,
    /// since each step needs the privilege the next one gives up. Then checks that setuid(0) fails and that
    /// every thread runs as this identity.
    pub fn assume(&self) -> Result<(), PrivilegeError> {
        let step = |step: String| move |cause| PrivilegeError::Switch { step, cause };
        setgroups(&[self.gid]).map_err(step(format!("set the supplementary groups to {} alone", self.gid)))?;
        setgid(self.gid).map_err(step(format!("set the group id to {}", self.gid)))?;
        setuid(self.uid).map_err(step(format!("set the user id to {}", self.uid)))?;
        if !self.uid.is_root() && setuid(Uid::from_raw(0)).is_ok() {
            return Err(PrivilegeError::RootRegained(self.clone()));
        }
        self.check_threads()
    }

    /// Checks that this process and each of its threads runs as this identity (real, effective, saved and file
    /// system ids), as `/proc/self/task/*/status` says. Where /proc cannot be read, the process's own ids are
    /// checked and the threads taken on trust (glibc switches them all), with a warning.
    fn check_threads(&self) -> Result<(), PrivilegeError> {
        let (uids, gids) = (getresuid(), getresgid());
        let own = match (uids, gids) {
            (Ok(u), Ok(g)) => {
                [u.real, u.effective, u.saved] == [self.uid; 3] && [g.real, g.effective, g.saved] == [self.gid; 3]
            }
            _ => false,
        };
        if !own {
            return Err(PrivilegeError::ThreadNotSwitched {
                identity: self.clone(),
                task: "main".into(),
                found: format!("{uids:?} {gids:?}"),
            });
        }
        let tasks = match fs::read_dir("/proc/self/task") {
            Ok(tasks) => tasks,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read /proc/self/task to check that every thread switched user");
                return Ok(());
            }
        };
        for task in tasks.flatten() {
            let name = task.file_name().to_string_lossy().into_owned();
            // A thread that ended meanwhile has nothing left to check.
            let Ok(status) = fs::read_to_string(task.path().join("status")) else {
                continue;
            };
            if !status_runs_as(&status, self.uid.as_raw(), self.gid.as_raw()) {
                let found = status
                    .lines()
                    .filter(|l| l.starts_with("Uid:") || l.starts_with("Gid:"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(PrivilegeError::ThreadNotSwitched {
                    identity: self.clone(),
                    task: name,
                    found,
                });
            }
        }
        Ok(())
    }
}

/// Whether a `/proc/PID/status` text has all four user ids (real, effective, saved, file system) equal to `uid`
/// and all four group ids equal to `gid`.
pub(crate) fn status_runs_as(status: &str, uid: u32, gid: u32) -> bool {
    let all_equal = |key: &str, want: u32| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .is_some_and(|ids| {
                let ids: Vec<&str> = ids.split_whitespace().collect();
                ids.len() == 4 && ids.iter().all(|id| id.parse() == Ok(want))
            })
    };
    all_equal("Uid:", uid) && all_equal("Gid:", gid)
}

/// Refuses to go on as root (`euid` 0) unless `allow_root`: called by `sinkhole run` when it was not told
/// `--user`. Other commands (`check`, `explain`) serve nothing and may run as anyone.
pub fn refuse_root(euid: Uid, allow_root: bool) -> Result<(), PrivilegeError> {
    if euid.is_root() && !allow_root {
        return Err(PrivilegeError::RootUnasked);
    }
    Ok(())
}

/// The process's effective user id, for [`refuse_root`].
pub fn effective_user() -> Uid {
    nix::unistd::geteuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_must_say_how_it_runs() {
        let message = refuse_root(Uid::from_raw(0), false)
            .expect_err("root, unasked")
            .to_string();
        for needed in ["--user NAME", "--allow-root", "CAP_NET_BIND_SERVICE", "not recommended"] {
            assert!(message.contains(needed), "{needed} missing from: {message}");
        }
        assert!(refuse_root(Uid::from_raw(0), true).is_ok());
        assert!(refuse_root(Uid::from_raw(65534), false).is_ok());
    }

    #[test]
    fn users_and_groups_are_looked_up_by_name_or_number() {
        let root = Identity::lookup("root", None).expect("root exists everywhere");
        assert_eq!((root.uid.as_raw(), root.gid.as_raw()), (0, 0));
        assert_eq!(Identity::lookup("0", Some("0")).expect("numeric ids"), root);
        match Identity::lookup("no-such-user-sinkhole", None) {
            Err(e @ PrivilegeError::NoSuchUser(_)) => assert!(e.to_string().contains("getent passwd"), "{e}"),
            other => panic!("expected NoSuchUser, got {other:?}"),
        }
        match Identity::lookup("root", Some("no-such-group-sinkhole")) {
            Err(PrivilegeError::NoSuchGroup(name)) => assert_eq!(name, "no-such-group-sinkhole"),
            other => panic!("expected NoSuchGroup, got {other:?}"),
        }
    }

    #[test]
    fn net_admin_is_given_up_unless_needed() {
        use caps::{CapSet, Capability};
        // Capabilities are per thread: this test's own thread gives it up, nothing else.
        std::thread::spawn(|| {
            let held = caps::has_cap(None, CapSet::Permitted, Capability::CAP_NET_ADMIN).unwrap();
            limit_net_admin(true).unwrap();
            assert_eq!(
                caps::has_cap(None, CapSet::Permitted, Capability::CAP_NET_ADMIN).unwrap(),
                held,
                "kept when needed"
            );
            limit_net_admin(false).unwrap();
            for set in [
                CapSet::Ambient,
                CapSet::Effective,
                CapSet::Permitted,
                CapSet::Inheritable,
            ] {
                assert!(!caps::has_cap(None, set, Capability::CAP_NET_ADMIN).unwrap(), "{set:?}");
            }
            // Given up for good: it cannot be raised again.
            assert!(caps::raise(None, CapSet::Effective, Capability::CAP_NET_ADMIN).is_err());
            // Nothing to give up the second time.
            limit_net_admin(false).unwrap();
        })
        .join()
        .expect("the capability checks pass");
    }

    #[test]
    fn status_lines_must_show_the_identity_in_all_four_places() {
        let status = "Name:\tudp-0\nUid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n";
        assert!(status_runs_as(status, 65534, 65534));
        assert!(!status_runs_as(status, 0, 65534));
        let saved_root = "Uid:\t65534\t65534\t0\t65534\nGid:\t65534\t65534\t65534\t65534\n";
        assert!(
            !status_runs_as(saved_root, 65534, 65534),
            "a saved uid of 0 can be taken back"
        );
        assert!(
            !status_runs_as("Name:\tx\n", 65534, 65534),
            "no Uid line: not shown to run as anyone"
        );
    }
}
