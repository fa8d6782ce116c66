//! Adding the first user to the guest's account files (`passwd`, `group`,
//! `shadow`, `gshadow`) as `useradd` would, without running anything in
//! the guest.
//!
//! The user gets the host user's uid and gid when the guest can give them
//! (as Lima does): a 9p or virtiofs share shows the host folder's owner
//! as is, and the guest checks permissions against it, so only a guest
//! user with the host user's uid may write into the host user's folders.

/// The four account files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    /// `/etc/passwd`.
    pub passwd: String,
    /// `/etc/group`.
    pub group: String,
    /// `/etc/shadow`.
    pub shadow: String,
    /// `/etc/gshadow`.
    pub gshadow: String,
}

/// The first ordinary uid and gid on Debian.
const FIRST_ID: u32 = 1000;
const LAST_ID: u32 = 59999;
/// The highest id the guest user may take from the host: above it sit
/// `nobody` (65534) and ids that the user namespace of a rootless build
/// (65536 ids) cannot map.
const LAST_HOST_ID: u32 = 65533;

/// A new user.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    /// Login name.
    pub name: &'a str,
    /// Password hash for `shadow`, or `None` for a locked password.
    pub password_hash: Option<&'a str>,
    /// Days since the epoch (the last password change).
    pub today: u64,
    /// Groups the user is a member of besides its own.
    pub groups: &'a [&'a str],
    /// Login shell.
    pub shell: &'a str,
    /// The uid and gid to give it if the guest can (the host user's).
    pub wanted_ids: Option<(u32, u32)>,
}

/// The ids a new user got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedUser {
    /// Its uid.
    pub uid: u32,
    /// Its gid (that of its own group).
    pub gid: u32,
    /// Why a wanted id was not given, if one was not.
    pub refused: Option<String>,
}

impl Accounts {
    /// Adds `user` with its own group: with the wanted ids where they are
    /// ordinary ids (1000 to 65533) free in the guest, else at the first
    /// uid (and the same gid) from 1000 up that is free.
    pub fn add_user(&mut self, user: &NewUser) -> Result<AddedUser, String> {
        let name = user.name;
        if names(&self.passwd).any(|n| n == name) {
            return Err(format!("the guest already has a user named {name}"));
        }
        if names(&self.group).any(|n| n == name) {
            return Err(format!("the guest already has a group named {name}"));
        }
        let uids: Vec<u32> = ids(&self.passwd).collect();
        let gids: Vec<u32> = ids(&self.group).collect();
        let first_free = || {
            (FIRST_ID..=LAST_ID)
                .find(|id| !uids.contains(id) && !gids.contains(id))
                .ok_or("no free uid left in the guest")
        };
        let (uid, gid, refused) = match user.wanted_ids {
            None => {
                let id = first_free()?;
                (id, id, None)
            }
            Some((uid, gid)) => match (usable(uid, &uids), usable(gid, &gids)) {
                (Err(why), _) => {
                    let id = first_free()?;
                    (id, id, Some(format!("uid {uid} {why}")))
                }
                (Ok(()), Ok(())) => (uid, gid, None),
                (Ok(()), Err(why)) => {
                    let own = if gids.contains(&uid) {
                        first_free()?
                    } else {
                        uid
                    };
                    (uid, own, Some(format!("gid {gid} {why}")))
                }
            },
        };
        let hash = user.password_hash.unwrap_or("!");
        append_line(
            &mut self.passwd,
            &format!("{name}:x:{uid}:{gid}::/home/{name}:{}", user.shell),
        );
        append_line(
            &mut self.shadow,
            &format!("{name}:{hash}:{}:0:99999:7:::", user.today),
        );
        append_line(&mut self.group, &format!("{name}:x:{gid}:"));
        append_line(&mut self.gshadow, &format!("{name}:!::"));
        for group in user.groups {
            self.group = add_member(&self.group, group, name, 3)
                .ok_or_else(|| format!("the guest has no group {group}"))?;
            if let Some(gshadow) = add_member(&self.gshadow, group, name, 3) {
                self.gshadow = gshadow;
            }
        }
        Ok(AddedUser { uid, gid, refused })
    }
}

/// The host user's uid and gid for a guest whose accounts are not known
/// in advance (image-bootstrap's): each where it is an ordinary id, else
/// the first ordinary one.
pub fn host_ids_for_guest() -> (u32, u32) {
    let pick = |id: u32| {
        if usable(id, &[]).is_ok() {
            id
        } else {
            FIRST_ID
        }
    };
    (
        pick(nix::unistd::getuid().as_raw()),
        pick(nix::unistd::getgid().as_raw()),
    )
}

/// Whether the guest can give `id` (taken from the host) to its user.
fn usable(id: u32, taken: &[u32]) -> Result<(), &'static str> {
    if id < FIRST_ID {
        Err("is a system id in the guest (or root)")
    } else if id > LAST_HOST_ID {
        Err("is above 65533 (nobody, or beyond the ids a rootless build maps)")
    } else if taken.contains(&id) {
        Err("is taken in the guest")
    } else {
        Ok(())
    }
}

fn names(file: &str) -> impl Iterator<Item = &str> {
    file.lines().filter_map(|l| l.split(':').next())
}

fn ids(file: &str) -> impl Iterator<Item = u32> + '_ {
    file.lines()
        .filter_map(|l| l.split(':').nth(2).and_then(|id| id.parse().ok()))
}

fn append_line(file: &mut String, line: &str) {
    if !file.is_empty() && !file.ends_with('\n') {
        file.push('\n');
    }
    file.push_str(line);
    file.push('\n');
}

/// `file` with `member` added to the member list (field `field`) of the
/// line of `group`; `None` without such a line.
fn add_member(file: &str, group: &str, member: &str, field: usize) -> Option<String> {
    let mut found = false;
    let mut out = String::with_capacity(file.len() + member.len() + 1);
    for line in file.lines() {
        let mut fields: Vec<String> = line.split(':').map(str::to_owned).collect();
        if fields.first().map(String::as_str) == Some(group) && fields.len() > field {
            found = true;
            let members = &mut fields[field];
            if !members.split(',').any(|m| m == member) {
                if !members.is_empty() {
                    members.push(',');
                }
                members.push_str(member);
            }
        }
        out.push_str(&fields.join(":"));
        out.push('\n');
    }
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debian() -> Accounts {
        Accounts {
            passwd: "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n".into(),
            group: "root:x:0:\nsudo:x:27:\nusers:x:100:\nsystemd-journal:x:999:\n".into(),
            shadow: "root:*:19000:0:99999:7:::\n".into(),
            gshadow: "root:*::\nsudo:*::\n".into(),
        }
    }

    #[test]
    fn adds_the_user_like_useradd() {
        let mut accounts = debian();
        let id = accounts
            .add_user(&NewUser {
                name: "user",
                password_hash: Some("$6$salt$hash"),
                today: 20000,
                groups: &["sudo"],
                shell: "/bin/bash",
                wanted_ids: None,
            })
            .unwrap();
        assert_eq!((id.uid, id.gid, id.refused), (1000, 1000, None));
        assert!(
            accounts
                .passwd
                .ends_with("user:x:1000:1000::/home/user:/bin/bash\n")
        );
        assert!(
            accounts
                .shadow
                .ends_with("user:$6$salt$hash:20000:0:99999:7:::\n")
        );
        assert!(accounts.group.contains("\nsudo:x:27:user\n"));
        assert!(accounts.group.ends_with("user:x:1000:\n"));
        assert!(accounts.gshadow.contains("sudo:*::user\n"));
        assert!(accounts.gshadow.ends_with("user:!::\n"));
    }

    #[test]
    fn skips_taken_ids_and_refuses_taken_names() {
        let mut accounts = debian();
        accounts.group.push_str("staff:x:1000:\n");
        let user = NewUser {
            name: "dev",
            password_hash: None,
            today: 1,
            groups: &[],
            shell: "/bin/sh",
            wanted_ids: None,
        };
        assert_eq!(accounts.add_user(&user).unwrap().uid, 1001);
        assert!(accounts.shadow.contains("dev:!:1:"));
        let again = accounts.add_user(&user).unwrap_err();
        assert!(again.contains("already has a user"), "{again}");
    }

    fn wanting(uid: u32, gid: u32) -> NewUser<'static> {
        NewUser {
            name: "dev",
            password_hash: None,
            today: 1,
            groups: &[],
            shell: "/bin/sh",
            wanted_ids: Some((uid, gid)),
        }
    }

    #[test]
    fn takes_the_host_users_ids_when_free() {
        let mut accounts = debian();
        let added = accounts.add_user(&wanting(1001, 1002)).unwrap();
        assert_eq!((added.uid, added.gid, added.refused), (1001, 1002, None));
        assert!(
            accounts
                .passwd
                .ends_with("dev:x:1001:1002::/home/dev:/bin/sh\n")
        );
        assert!(accounts.group.ends_with("dev:x:1002:\n"));
    }

    #[test]
    fn refuses_root_system_ids_nobody_and_taken_ids() {
        for (uid, why) in [
            (0, "uid 0 is a system id"),
            (999, "uid 999 is a system id"),
            (65534, "uid 65534 is above 65533"),
            (100_000, "uid 100000 is above 65533"),
        ] {
            let mut accounts = debian();
            let added = accounts.add_user(&wanting(uid, uid)).unwrap();
            assert_eq!((added.uid, added.gid), (1000, 1000), "{uid}");
            assert!(
                added.refused.as_deref().unwrap().starts_with(why),
                "{added:?}"
            );
        }
        let mut accounts = debian();
        accounts.passwd.push_str("app:x:1001:1001::/srv:/bin/sh\n");
        let added = accounts.add_user(&wanting(1001, 1001)).unwrap();
        assert_eq!(added.uid, 1000);
        assert!(added.refused.unwrap().contains("taken"));
    }

    #[test]
    fn a_system_gid_on_the_host_gives_the_user_its_own_group() {
        // Hosts where users' primary group is `users` (100).
        let mut accounts = debian();
        let added = accounts.add_user(&wanting(1500, 100)).unwrap();
        assert_eq!((added.uid, added.gid), (1500, 1500));
        assert!(added.refused.unwrap().starts_with("gid 100 is a system id"));
    }
}
