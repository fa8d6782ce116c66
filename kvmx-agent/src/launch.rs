//! Starting a command as a guest user. The agent (root) cannot drop its
//! privileges between `fork` and `exec` without unsafe code, so it runs
//! itself again as a launcher (`kvmx-agent launch`): a new session (with
//! the terminal as its controlling one), the user's groups and ids, then
//! `exec` of the user's shell. The environment and the working folder are
//! set by the agent and passed on.

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::unistd::{Gid, Uid, setgid, setgroups, setsid, setuid};

use crate::request::Request;

/// The first argument that makes `kvmx-agent` a launcher.
pub const LAUNCH: &str = "launch";

/// The `PATH` of a user's login (Debian's `/etc/login.defs` `ENV_PATH`).
const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games";

/// A user's line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
    shell: String,
}

impl Account {
    /// The account called `name` in `/etc/passwd`.
    pub(crate) fn find(name: &str) -> Result<Account, String> {
        let passwd = std::fs::read_to_string("/etc/passwd")
            .map_err(|error| format!("cannot read /etc/passwd: {error}"))?;
        Account::in_passwd(&passwd, name)
            .ok_or_else(|| format!("the guest has no user {name:?} in /etc/passwd"))
    }

    fn in_passwd(passwd: &str, name: &str) -> Option<Account> {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let [user, _, uid, gid, _, home, shell] = fields[..] else {
                return None;
            };
            (user == name).then(|| {
                Some(Account {
                    name: user.to_owned(),
                    uid: uid.parse().ok()?,
                    gid: gid.parse().ok()?,
                    home: home.to_owned(),
                    shell: if shell.is_empty() { "/bin/sh" } else { shell }.to_owned(),
                })
            })?
        })
    }
}

/// The launcher command that runs `request` as `account`: the user's
/// shell with `-c` and the command line (or a login shell), in their
/// home, with their login environment.
pub(crate) fn command(request: &Request, account: &Account) -> Result<Command, String> {
    let agent = std::env::current_exe()
        .map_err(|error| format!("cannot find the agent's own program: {error}"))?;
    let mut command = Command::new(agent);
    let mode = if request.terminal.is_some() {
        "terminal"
    } else {
        "pipes"
    };
    command.args([
        LAUNCH,
        mode,
        &account.name,
        &account.uid.to_string(),
        &account.gid.to_string(),
        &account.shell,
    ]);
    if request.command.is_empty() {
        command.arg("-l");
    } else {
        command.args(["-c", &request.command]);
    }
    let home = std::path::Path::new(&account.home);
    command
        .env_clear()
        .envs(environment(request, account))
        .current_dir(if home.is_dir() { home } else { "/".as_ref() });
    Ok(command)
}

/// HOME, USER, LOGNAME, SHELL, PATH, the system's LANG, the user's
/// runtime folder when there is one, TERM with a terminal, then the
/// request's own variables.
fn environment(request: &Request, account: &Account) -> Vec<(String, String)> {
    let mut env = vec![
        ("HOME".to_owned(), account.home.clone()),
        ("USER".to_owned(), account.name.clone()),
        ("LOGNAME".to_owned(), account.name.clone()),
        ("SHELL".to_owned(), account.shell.clone()),
        ("PATH".to_owned(), USER_PATH.to_owned()),
    ];
    if let Some(lang) = system_lang() {
        env.push(("LANG".to_owned(), lang));
    }
    let runtime = format!("/run/user/{}", account.uid);
    if std::path::Path::new(&runtime).is_dir() {
        env.push(("XDG_RUNTIME_DIR".to_owned(), runtime));
    }
    if let Some(terminal) = &request.terminal {
        env.push(("TERM".to_owned(), terminal.term.clone()));
    }
    env.extend(request.env.iter().cloned());
    env
}

/// `LANG` of `/etc/default/locale`, as PAM would set it.
fn system_lang() -> Option<String> {
    let text = std::fs::read_to_string("/etc/default/locale").ok()?;
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix("LANG=")?;
        Some(value.trim_matches('"').to_owned())
    })
}

/// Runs as the launcher: `MODE USER UID GID SHELL ARGS...`. Returns only
/// on failure, with what went wrong.
pub fn launch(args: &[String]) -> String {
    let [mode, user, uid, gid, shell, rest @ ..] = args else {
        return "usage: kvmx-agent launch terminal|pipes USER UID GID SHELL ARGS...".into();
    };
    let (Ok(uid), Ok(gid)) = (uid.parse::<u32>(), gid.parse::<u32>()) else {
        return format!("bad uid {uid} or gid {gid}");
    };
    if let Err(error) = setsid() {
        return format!("setsid: {error}");
    }
    if mode == "terminal"
        && let Err(error) = rustix::process::ioctl_tiocsctty(std::io::stdin())
    {
        return format!("cannot take the terminal: {error}");
    }
    // The groups from /etc/group, not initgroups: NSS would load its
    // modules (systemd's asks a daemon), which costs a restored guest
    // under emulation more than the whole command.
    let groups = std::fs::read_to_string("/etc/group")
        .map(|text| groups_of(&text, user, gid))
        .unwrap_or_else(|_| vec![Gid::from_raw(gid)]);
    if let Err(error) = setgroups(&groups)
        .and_then(|()| setgid(Gid::from_raw(gid)))
        .and_then(|()| setuid(Uid::from_raw(uid)))
    {
        return format!("cannot become {user}: {error}");
    }
    let error = Command::new(shell).args(rest).exec();
    format!("cannot run {shell}: {error}")
}

/// `gid` and the groups that list `user` as a member in `/etc/group`.
fn groups_of(group_file: &str, user: &str, gid: u32) -> Vec<Gid> {
    let mut groups = vec![Gid::from_raw(gid)];
    for line in group_file.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        let [_, _, id, members] = fields[..] else {
            continue;
        };
        if let Ok(id) = id.parse::<u32>()
            && id != gid
            && members.split(',').any(|member| member == user)
        {
            groups.push(Gid::from_raw(id));
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        user:x:1000:1000:User,,,:/home/user:/bin/bash\n\
        plain:x:1001:100::/home/plain:\n";

    #[test]
    fn accounts_come_from_passwd_lines() {
        let user = Account::in_passwd(PASSWD, "user").unwrap();
        assert_eq!((user.uid, user.gid), (1000, 1000));
        assert_eq!(
            (user.home.as_str(), user.shell.as_str()),
            ("/home/user", "/bin/bash")
        );
        let plain = Account::in_passwd(PASSWD, "plain").unwrap();
        assert_eq!(plain.shell, "/bin/sh", "an empty shell is sh, as for login");
        assert_eq!(Account::in_passwd(PASSWD, "nobody"), None);
        assert_eq!(Account::in_passwd(PASSWD, "use"), None);
    }

    #[test]
    fn the_groups_are_the_primary_one_and_those_listing_the_user() {
        let group = "root:x:0:\nsudo:x:27:user,other\nusers:x:100:\nuser:x:1000:\nau:x:5:auser\n";
        let ids: Vec<u32> = groups_of(group, "user", 1000)
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        assert_eq!(ids, [1000, 27]);
    }

    #[test]
    fn the_environment_is_a_login_one_with_the_requests_variables_last() {
        let account = Account::in_passwd(PASSWD, "user").unwrap();
        let request = Request {
            user: "user".into(),
            command: "true".into(),
            terminal: Some(crate::Terminal {
                term: "xterm".into(),
                rows: 24,
                columns: 80,
            }),
            env: vec![("PATH".into(), "/opt/bin".into())],
        };
        let env = environment(&request, &account);
        let get = |name: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("HOME"), Some("/home/user"));
        assert_eq!(get("USER"), Some("user"));
        assert_eq!(get("TERM"), Some("xterm"));
        assert_eq!(
            get("PATH"),
            Some("/opt/bin"),
            "the request's own value wins"
        );
    }
}
