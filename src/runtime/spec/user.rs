//! Who the container process runs as: the CRI user fields and the image's USER resolved
//! against the rootfs's /etc/passwd and /etc/group (given as text by the caller), the
//! additional groups, and kubelet's run-as-non-root policy.

use super::error::{Result, SpecError};

/// The rootfs's /etc/passwd and /etc/group, as text; `None` when the file is absent.
#[derive(Debug, Clone, Default)]
pub struct UserDb {
    pub passwd: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: i64,
    gid: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: i64,
    members: Vec<String>,
}

/// Reads passwd lines the way libc (and moby/sys/user's ParsePasswd) does: blank and
/// comment lines skipped, missing trailing fields empty, bad numbers treated as 0.
fn passwd_entries(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let num = |i: usize| f.get(i).and_then(|s| s.parse().ok()).unwrap_or(0);
            PasswdEntry {
                name: f[0].to_string(),
                uid: num(2),
                gid: num(3),
            }
        })
        .collect()
}

fn group_entries(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            GroupEntry {
                name: f[0].to_string(),
                gid: f.get(2).and_then(|s| s.parse().ok()).unwrap_or(0),
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// The user string containerd builds from the CRI fields (util.GenerateUserString):
/// username wins over uid, a gid is appended as `:gid`, a gid without a user is an
/// error, nothing at all is `None`.
pub fn user_string(
    object: &str,
    run_as_username: &str,
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
) -> Result<Option<String>> {
    let user = if !run_as_username.is_empty() {
        Some(run_as_username.to_string())
    } else {
        run_as_user.map(|u| u.to_string())
    };
    match (user, run_as_group) {
        (None, Some(g)) => Err(SpecError::invalid(
            object,
            "linux.security_context.run_as_group",
            format!("user group \"{g}\" is specified without user"),
        )),
        (None, None) => Ok(None),
        (Some(u), None) => Ok(Some(u)),
        (Some(u), Some(g)) => Ok(Some(format!("{u}:{g}"))),
    }
}

/// A numeric part of a USER value: Some(Ok(id)) in range, Some(Err) out of range, None
/// for a name. containerd follows runc's limit of MaxInt32.
fn numeric(part: &str) -> Option<std::result::Result<u32, ()>> {
    // Go's strconv.Atoi: optional sign then digits.
    let digits = part.strip_prefix(['+', '-']).unwrap_or(part);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match part.parse::<i64>() {
        Ok(v) if (0..=i32::MAX as i64).contains(&v) => Ok(v as u32),
        _ => Err(()),
    })
}

/// The resolved identity of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Sorted, without duplicates.
    pub additional_gids: Vec<u32>,
}

/// Resolves a USER string (`user`, `uid`, `user:group`, `uid:gid`, `uid:group`,
/// `user:gid`) against the rootfs's files, as containerd's oci.WithUser does: a numeric
/// uid missing from /etc/passwd runs with gid 0; a name that is missing is an error.
/// The additional gids hold the primary gid (ensureAdditionalGids).
pub fn resolve_user(object: &str, field: &str, userstr: &str, db: &UserDb) -> Result<Identity> {
    let bad = |reason: String| SpecError::invalid(object, field, reason);
    let passwd = db.passwd.as_deref().map(passwd_entries);
    let groups = db.group.as_deref().map(group_entries);
    let parts: Vec<&str> = userstr.split(':').collect();
    let (uid, gid) = match parts.as_slice() {
        [u] => match numeric(u) {
            Some(Err(())) => {
                return Err(bad(format!(
                    "invalid USER value {userstr:?}: uid out of range"
                )));
            }
            // WithUserID: the passwd entry's gid, or 0 when there is none.
            Some(Ok(uid)) => {
                let gid = passwd
                    .iter()
                    .flatten()
                    .find(|p| p.uid == uid as i64)
                    .map_or(0, |p| p.gid as u32);
                (uid, gid)
            }
            // WithUsername: the user must exist.
            None => {
                let Some(p) = &passwd else {
                    return Err(bad(format!(
                        "user {u:?} cannot be resolved: the image has no /etc/passwd"
                    )));
                };
                let e = p.iter().find(|p| p.name == *u).ok_or_else(|| {
                    bad(format!(
                        "no users found: {u:?} is not in the image's /etc/passwd"
                    ))
                })?;
                (e.uid as u32, e.gid as u32)
            }
        },
        [u, g] => {
            let uid = match numeric(u) {
                Some(Ok(v)) => v,
                Some(Err(())) => {
                    return Err(bad(format!(
                        "invalid USER value {userstr:?}: uid out of range"
                    )));
                }
                None => {
                    let Some(p) = &passwd else {
                        return Err(bad(format!(
                            "user {u:?} cannot be resolved: the image has no /etc/passwd"
                        )));
                    };
                    p.iter()
                        .find(|p| p.name == *u)
                        .map(|p| p.uid as u32)
                        .ok_or_else(|| {
                            bad(format!(
                                "no users found: {u:?} is not in the image's /etc/passwd"
                            ))
                        })?
                }
            };
            let gid = match numeric(g) {
                Some(Ok(v)) => v,
                Some(Err(())) => {
                    return Err(bad(format!(
                        "invalid USER value {userstr:?}: gid out of range"
                    )));
                }
                None => {
                    let Some(gs) = &groups else {
                        return Err(bad(format!(
                            "group {g:?} cannot be resolved: the image has no /etc/group"
                        )));
                    };
                    gs.iter()
                        .find(|e| e.name == *g)
                        .map(|e| e.gid as u32)
                        .ok_or_else(|| {
                            bad(format!(
                                "no groups found: {g:?} is not in the image's /etc/group"
                            ))
                        })?
                }
            };
            (uid, gid)
        }
        _ => return Err(bad(format!("invalid USER value {userstr}"))),
    };
    Ok(Identity {
        uid,
        gid,
        additional_gids: vec![gid],
    })
}

/// The groups of /etc/group that list the user as a member (containerd's
/// oci.WithAdditionalGIDs): `userstr` is a uid (looked up in /etc/passwd for its name; a
/// uid without an entry has none) or a name; a group named like the user is its primary
/// group, not a supplementary one.
pub fn image_groups(userstr: &str, db: &UserDb) -> Vec<u32> {
    let name = match numeric(userstr) {
        Some(Ok(uid)) => {
            let Some(p) = db.passwd.as_deref().map(passwd_entries) else {
                return vec![];
            };
            match p.into_iter().find(|p| p.uid == uid as i64) {
                Some(p) => p.name,
                None => return vec![],
            }
        }
        Some(Err(())) => return vec![],
        None => userstr.to_string(),
    };
    let Some(groups) = db.group.as_deref().map(group_entries) else {
        return vec![];
    };
    groups
        .into_iter()
        .filter(|g| g.name != name && g.members.contains(&name))
        .map(|g| g.gid as u32)
        .collect()
}

/// Sorted union without duplicates (containerd's mergeGids).
pub fn merge_gids(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut v: Vec<u32> = a.iter().chain(b).copied().collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// CRI `supplemental_groups` as gids; negative or too large values are refused (containerd
/// would wrap them into another gid).
pub fn supplemental_gids(object: &str, groups: &[i64]) -> Result<Vec<u32>> {
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            u32::try_from(*g).map_err(|_| {
                SpecError::invalid(
                    object,
                    format!("linux.security_context.supplemental_groups[{i}]"),
                    format!("{g} is not a valid group id"),
                )
            })
        })
        .collect()
}

/// How the CRI supplementary-groups policy combines image groups and the pod's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupsPolicy {
    /// Image /etc/group membership plus supplemental_groups (the default).
    Merge,
    /// supplemental_groups only.
    Strict,
}

impl GroupsPolicy {
    /// From the CRI enum value (Merge = 0, Strict = 1).
    pub fn from_cri(object: &str, v: i32) -> Result<Self> {
        match v {
            0 => Ok(Self::Merge),
            1 => Ok(Self::Strict),
            _ => Err(SpecError::invalid(
                object,
                "linux.security_context.supplemental_groups_policy",
                format!("unknown SupplementalGroupsPolicy={v} (Merge=0, Strict=1)"),
            )),
        }
    }
}

/// The CRI user fields of a container.
#[derive(Debug, Clone, Default)]
pub struct UserRequest<'a> {
    pub run_as_username: &'a str,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: &'a [i64],
    pub image_user: &'a str,
}

/// The container's identity, in containerd's order: supplemental groups merged in
/// buildLinuxSpec, then WithUser (which resets the groups to the primary gid), then per
/// policy WithAdditionalGIDs (Merge) and WithSupplementalGroups.
pub fn container_identity(
    object: &str,
    req: &UserRequest<'_>,
    policy: GroupsPolicy,
    db: &UserDb,
) -> Result<Identity> {
    let supplemental = supplemental_gids(object, req.supplemental_groups)?;
    let explicit = user_string(
        object,
        req.run_as_username,
        req.run_as_user,
        req.run_as_group,
    )?;
    let (userstr, field) = match explicit {
        Some(u) => (Some(u), "linux.security_context.run_as_user"),
        None if !req.image_user.is_empty() => (Some(req.image_user.to_string()), "image.user"),
        None => (None, ""),
    };
    let mut id = match &userstr {
        Some(u) => resolve_user(object, field, u, db)?,
        None => Identity {
            uid: 0,
            gid: 0,
            additional_gids: merge_gids(&supplemental, &[]),
        },
    };
    if policy == GroupsPolicy::Merge {
        // The name or uid the image groups are looked up for: containerSpecOpts.
        let lookup = if !req.run_as_username.is_empty() {
            req.run_as_username.to_string()
        } else if let Some(u) = req.run_as_user {
            u.to_string()
        } else if !req.image_user.is_empty() {
            req.image_user
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string()
        } else {
            "0".to_string()
        };
        let mut groups = image_groups(&lookup, db);
        groups.push(id.gid);
        id.additional_gids = merge_gids(&id.additional_gids, &groups);
    }
    id.additional_gids = merge_gids(&id.additional_gids, &supplemental);
    Ok(id)
}

/// kubelet's verifyRunAsNonRoot, for berth's kubelet to call before CreateContainer.
/// `pod` is kubelet's `name_namespace(uid)` form; `image_user` is the image's USER.
pub fn verify_run_as_non_root(
    run_as_non_root: Option<bool>,
    run_as_user: Option<i64>,
    image_user: &str,
    pod: &str,
    container: &str,
) -> Result<()> {
    if run_as_non_root != Some(true) {
        return Ok(());
    }
    if let Some(u) = run_as_user {
        if u == 0 {
            return Err(SpecError::NonRoot(format!(
                "container's runAsUser breaks non-root policy (pod: {pod:?}, container: {container})"
            )));
        }
        return Ok(());
    }
    // The image's user as the CRI ImageStatus reports it (containerd's
    // getUserFromImage), and kubelet's getImageUser treating "none" as root.
    let first = image_user.split(':').next().unwrap_or_default();
    let (uid, username): (Option<i64>, &str) = if first.is_empty() {
        (Some(0), "")
    } else {
        match first.parse::<i64>() {
            Ok(u) => (Some(u), ""),
            Err(_) => (None, first),
        }
    };
    match uid {
        None => Err(SpecError::NonRoot(format!(
            "container has runAsNonRoot and image has non-numeric user ({username}), cannot \
             verify user is non-root (pod: {pod:?}, container: {container})"
        ))),
        Some(0) => Err(SpecError::NonRoot(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod:?}, container: \
             {container})"
        ))),
        Some(u) if !(1..=i32::MAX as i64).contains(&u) => Err(SpecError::NonRoot(format!(
            "container has runAsNonRoot and image has an invalid user id ({u}). (Must be \
             1-({})): must be between 0 and 2147483647, inclusive (pod: {pod:?}, container: \
             {container})",
            i32::MAX
        ))),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        app:x:1000:1001:App:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
        wheel:x:10:root,app\n\
        app:x:1001:app\n\
        audio:x:29:app\n\
        video:x:44:daemon\n";

    fn db() -> UserDb {
        UserDb {
            passwd: Some(PASSWD.into()),
            group: Some(GROUP.into()),
        }
    }

    // containerd util.GenerateUserString
    #[test]
    fn user_string_combinations() {
        type Case<'a> = (&'a str, Option<i64>, Option<i64>, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            ("", None, None, None),
            ("app", None, None, Some("app")),
            ("app", Some(5), None, Some("app")),
            ("app", Some(5), Some(7), Some("app:7")),
            ("app", None, Some(7), Some("app:7")),
            ("", Some(5), None, Some("5")),
            ("", Some(5), Some(7), Some("5:7")),
        ];
        for (name, uid, gid, want) in cases {
            let got = user_string("c", name, *uid, *gid).expect("ok");
            assert_eq!(got.as_deref(), *want, "{name:?} {uid:?} {gid:?}");
        }
        let e = user_string("c", "", None, Some(7)).expect_err("gid without user");
        assert!(e.to_string().contains("run_as_group"), "{e}");
        assert!(e.to_string().contains("specified without user"), "{e}");
    }

    // containerd oci.WithUser / WithUserID / WithUsername
    #[test]
    fn resolve_user_forms() {
        let cases: &[(&str, u32, u32)] = &[
            ("0", 0, 0),
            ("1000", 1000, 1001),
            ("4242", 4242, 0), // not in passwd: gid 0, no error
            ("app", 1000, 1001),
            ("1000:5", 1000, 5),
            ("app:5", 1000, 5),
            ("app:wheel", 1000, 10),
            ("77:audio", 77, 29),
        ];
        for (u, uid, gid) in cases {
            let id = resolve_user("c", "image.user", u, &db()).expect(u);
            assert_eq!((id.uid, id.gid), (*uid, *gid), "{u}");
            assert_eq!(id.additional_gids, vec![*gid], "{u}");
        }
    }

    #[test]
    fn resolve_user_errors() {
        let cases: &[(&str, &str)] = &[
            ("nobody", "no users found"),
            ("app:nogroup", "no groups found"),
            ("-1", "uid out of range"),
            ("2147483648", "uid out of range"),
            ("1:-2", "gid out of range"),
            ("a:b:c", "invalid USER value"),
        ];
        for (u, want) in cases {
            let e = resolve_user("c", "image.user", u, &db()).expect_err(u);
            assert!(e.to_string().contains(want), "{u}: {e}");
            assert!(e.to_string().contains("image.user"), "{u}: {e}");
        }
        let none = UserDb::default();
        assert_eq!(
            resolve_user("c", "f", "1000", &none).expect("numeric").gid,
            0
        );
        assert!(resolve_user("c", "f", "app", &none).is_err());
    }

    // containerd oci.WithAdditionalGIDs
    #[test]
    fn image_groups_membership() {
        assert_eq!(image_groups("app", &db()), vec![10, 29]); // not its own "app" group
        assert_eq!(image_groups("1000", &db()), vec![10, 29]);
        assert_eq!(image_groups("0", &db()), vec![10]);
        assert_eq!(image_groups("4242", &db()), Vec::<u32>::new());
        assert_eq!(image_groups("app", &UserDb::default()), Vec::<u32>::new());
    }

    // containerSpecOpts + buildLinuxSpec ordering of WithUser, WithAdditionalGIDs and
    // WithSupplementalGroups.
    #[test]
    fn identity_by_policy() {
        type Case<'a> = (UserRequest<'a>, GroupsPolicy, (u32, u32, &'a [u32]));
        let cases: Vec<Case<'_>> = vec![
            (
                UserRequest {
                    run_as_user: Some(1000),
                    supplemental_groups: &[500, 10],
                    ..Default::default()
                },
                GroupsPolicy::Merge,
                (1000, 1001, &[10, 29, 500, 1001]),
            ),
            (
                UserRequest {
                    run_as_user: Some(1000),
                    supplemental_groups: &[500],
                    ..Default::default()
                },
                GroupsPolicy::Strict,
                (1000, 1001, &[500, 1001]),
            ),
            (
                UserRequest {
                    run_as_user: Some(1000),
                    run_as_group: Some(3000),
                    ..Default::default()
                },
                GroupsPolicy::Merge,
                (1000, 3000, &[10, 29, 3000]),
            ),
            (
                UserRequest {
                    image_user: "app:audio",
                    ..Default::default()
                },
                GroupsPolicy::Merge,
                (1000, 29, &[10, 29]),
            ),
            (
                UserRequest::default(),
                GroupsPolicy::Merge,
                (0, 0, &[0, 10]),
            ),
            (
                UserRequest {
                    supplemental_groups: &[7],
                    ..Default::default()
                },
                GroupsPolicy::Strict,
                (0, 0, &[7]),
            ),
            (
                UserRequest {
                    run_as_username: "app",
                    run_as_user: Some(5),
                    ..Default::default()
                },
                GroupsPolicy::Merge,
                (1000, 1001, &[10, 29, 1001]),
            ),
        ];
        for (req, policy, (uid, gid, groups)) in cases {
            let id = container_identity("c", &req, policy, &db()).expect("identity");
            assert_eq!((id.uid, id.gid), (uid, gid), "{req:?}");
            assert_eq!(id.additional_gids, groups, "{req:?} {policy:?}");
        }
        let e = container_identity(
            "c",
            &UserRequest {
                supplemental_groups: &[-1],
                ..Default::default()
            },
            GroupsPolicy::Merge,
            &db(),
        )
        .expect_err("negative group");
        assert!(e.to_string().contains("supplemental_groups[0]"), "{e}");
        assert!(GroupsPolicy::from_cri("c", 2).is_err());
    }

    // kubelet verifyRunAsNonRoot
    #[test]
    fn run_as_non_root_policy() {
        let pod = "web_default(1234)";
        let ok: &[(Option<bool>, Option<i64>, &str)] = &[
            (None, None, ""),
            (Some(false), Some(0), "root"),
            (Some(true), Some(1000), "root"),
            (Some(true), None, "1000"),
            (Some(true), None, "1000:0"),
        ];
        for (nr, u, img) in ok {
            verify_run_as_non_root(*nr, *u, img, pod, "app").expect(img);
        }
        let bad: &[(Option<i64>, &str, &str)] = &[
            (
                Some(0),
                "1000",
                "container's runAsUser breaks non-root policy",
            ),
            (None, "", "image will run as root"),
            (None, "0", "image will run as root"),
            (None, "0:1000", "image will run as root"),
            (
                None,
                "app",
                "image has non-numeric user (app), cannot verify",
            ),
            (None, "-5", "invalid user id (-5)"),
        ];
        for (u, img, want) in bad {
            let e = verify_run_as_non_root(Some(true), *u, img, pod, "app").expect_err(img);
            assert!(e.to_string().contains(want), "{img}: {e}");
            assert!(
                e.to_string()
                    .contains("(pod: \"web_default(1234)\", container: app)"),
                "{e}"
            );
        }
    }
}
