//! Adding the first user to the guest's account files (`passwd`, `group`,
//! `shadow`, `gshadow`) as `useradd` would, without running anything in
//! the guest.

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
}

impl Accounts {
    /// Adds `user` with its own group, at the first uid (and the same gid)
    /// from 1000 up that is free; returns that id.
    pub fn add_user(&mut self, user: &NewUser) -> Result<u32, String> {
        let name = user.name;
        if names(&self.passwd).any(|n| n == name) {
            return Err(format!("the guest already has a user named {name}"));
        }
        if names(&self.group).any(|n| n == name) {
            return Err(format!("the guest already has a group named {name}"));
        }
        let uids: Vec<u32> = ids(&self.passwd).collect();
        let gids: Vec<u32> = ids(&self.group).collect();
        let id = (FIRST_ID..=LAST_ID)
            .find(|id| !uids.contains(id) && !gids.contains(id))
            .ok_or("no free uid left in the guest")?;
        let hash = user.password_hash.unwrap_or("!");
        append_line(
            &mut self.passwd,
            &format!("{name}:x:{id}:{id}::/home/{name}:{}", user.shell),
        );
        append_line(
            &mut self.shadow,
            &format!("{name}:{hash}:{}:0:99999:7:::", user.today),
        );
        append_line(&mut self.group, &format!("{name}:x:{id}:"));
        append_line(&mut self.gshadow, &format!("{name}:!::"));
        for group in user.groups {
            self.group = add_member(&self.group, group, name, 3)
                .ok_or_else(|| format!("the guest has no group {group}"))?;
            if let Some(gshadow) = add_member(&self.gshadow, group, name, 3) {
                self.gshadow = gshadow;
            }
        }
        Ok(id)
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
            })
            .unwrap();
        assert_eq!(id, 1000);
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
        };
        assert_eq!(accounts.add_user(&user).unwrap(), 1001);
        assert!(accounts.shadow.contains("dev:!:1:"));
        let again = accounts.add_user(&user).unwrap_err();
        assert!(again.contains("already has a user"), "{again}");
    }
}
