//! Dropping root: a sensor started as root opens its capture, then becomes
//! an ordinary user (and that user's groups) before it reads a packet.
//! Root, or `CAP_NET_RAW`, is needed to open a capture socket, never to
//! read from one already open.

use anyhow::{bail, Context};
use nix::unistd::{Gid, Uid};
use std::ffi::CString;
use std::path::Path;

/// The user to become, resolved before anything is opened.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl Target {
    /// Looks `name` up in the system's user database.
    pub fn lookup(name: &str) -> anyhow::Result<Target> {
        let user = nix::unistd::User::from_name(name)
            .with_context(|| format!("user {name}: cannot read the user database"))?
            .with_context(|| format!("user {name}: no such user"))?;
        Ok(Target { name: name.to_string(), uid: user.uid.as_raw(), gid: user.gid.as_raw() })
    }

    /// Becomes this user: supplementary groups, group, then user (in this
    /// order: once the user is changed, the groups can no longer be). glibc
    /// applies each change to every thread of the process. Checks that root
    /// cannot be regained; any failure is an error, and the caller stops.
    pub fn become_it(&self) -> anyhow::Result<()> {
        let (uid, gid) = (Uid::from_raw(self.uid), Gid::from_raw(self.gid));
        if Uid::current() == uid && Uid::effective() == uid && Gid::current() == gid && Gid::effective() == gid {
            return Ok(());
        }
        if !Uid::effective().is_root() {
            bail!(
                "user {}: only root can change to another user (running as uid {})",
                self.name,
                Uid::effective().as_raw()
            );
        }
        let cname = CString::new(self.name.as_str()).with_context(|| format!("user {}: bad name", self.name))?;
        nix::unistd::initgroups(&cname, gid).with_context(|| format!("user {}: cannot set its groups", self.name))?;
        nix::unistd::setgid(gid).with_context(|| format!("user {}: cannot set group {}", self.name, self.gid))?;
        nix::unistd::setuid(uid).with_context(|| format!("user {}: cannot set user {}", self.name, self.uid))?;
        if self.uid != 0 && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            bail!("user {}: root could be regained after the change; stopping", self.name);
        }
        let now = (Uid::current(), Uid::effective(), Gid::current(), Gid::effective());
        if now != (uid, uid, gid, gid) {
            bail!("user {}: the change did not take (uid {}/{}, gid {}/{})", self.name, now.0, now.1, now.2, now.3);
        }
        Ok(())
    }
}

/// Fails unless the current user may create files in `dir` (the log
/// folder, written after the change of user).
pub fn check_writable(dir: &Path) -> anyhow::Result<()> {
    tempfile::NamedTempFile::new_in(dir).map(drop).with_context(|| {
        format!("{} is not writable by uid {}: give it to that user", dir.display(), Uid::effective().as_raw())
    })
}
