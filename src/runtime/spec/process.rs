//! The container's program, environment and working directory from the CRI config merged
//! with the image config, as containerd's CRI plugin merges them.

use super::error::{Result, SpecError};

/// The PATH every container starts with (containerd's defaultUnixEnv).
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The image config fields the merge reads.
#[derive(Debug, Clone, Default)]
pub struct ImageProcess<'a> {
    pub entrypoint: &'a [String],
    pub cmd: &'a [String],
    pub env: &'a [String],
    pub working_dir: &'a str,
    pub user: &'a str,
}

/// argv from CRI command/args and the image's Entrypoint/Cmd (containerd's
/// WithProcessArgs, itself Docker's rule): a command replaces the entrypoint and drops
/// the image's Cmd; args replace Cmd; an image Entrypoint of `[""]` means "none".
pub fn args(
    object: &str,
    command: &[String],
    cri_args: &[String],
    image: &ImageProcess<'_>,
) -> Result<Vec<String>> {
    let mut command = command.to_vec();
    let mut args = cri_args.to_vec();
    if command.is_empty() {
        if args.is_empty() {
            args = image.cmd.to_vec();
        }
        if !(image.entrypoint.len() == 1 && image.entrypoint[0].is_empty()) {
            command = image.entrypoint.to_vec();
        }
    }
    if command.is_empty() && args.is_empty() {
        return Err(SpecError::invalid(
            object,
            "command",
            "no command specified: neither the config's command/args nor the image's \
             Entrypoint/Cmd name a program",
        ));
    }
    command.extend(args);
    if command[0].is_empty() {
        return Err(SpecError::invalid(
            object,
            "command[0]",
            "the program name is empty",
        ));
    }
    for (i, a) in command.iter().enumerate() {
        if a.contains('\0') {
            return Err(SpecError::invalid(
                object,
                format!("args[{i}]"),
                "holds a NUL byte",
            ));
        }
    }
    Ok(command)
}

/// containerd's replaceOrAppendEnvValues: an override replaces a variable of the same
/// name in place or is appended; an override without `=` unsets the variable.
pub fn replace_or_append(defaults: &[String], overrides: &[String]) -> Vec<String> {
    let mut out: Vec<Option<String>> = defaults.iter().cloned().map(Some).collect();
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let mut index: std::collections::HashMap<String, usize> = out
        .iter()
        .enumerate()
        .map(|(i, e)| (key(e.as_deref().unwrap_or_default()), i))
        .collect();
    for o in overrides {
        let k = key(o);
        if !o.contains('=') {
            if let Some(i) = index.get(&k) {
                out[*i] = None;
            }
            continue;
        }
        match index.get(&k) {
            Some(i) => out[*i] = Some(o.clone()),
            None => {
                index.insert(k, out.len());
                out.push(Some(o.clone()));
            }
        }
    }
    out.into_iter()
        .flatten()
        .filter(|e| !e.is_empty())
        .collect()
}

/// The environment in containerd's order: default PATH, TERM=xterm for a tty, HOSTNAME,
/// then the image's env, then the config's (a later value replaces an earlier one in
/// place).
pub fn env(
    object: &str,
    hostname: &str,
    tty: bool,
    image_env: &[String],
    config_env: &[(String, String)],
) -> Result<Vec<String>> {
    let mut e = vec![DEFAULT_PATH_ENV.to_string()];
    if tty {
        e.push("TERM=xterm".into());
    }
    e = replace_or_append(&e, &[format!("HOSTNAME={hostname}")]);
    let mut merged: Vec<String> = image_env.to_vec();
    for (i, (k, v)) in config_env.iter().enumerate() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(SpecError::invalid(
                object,
                format!("envs[{i}].key"),
                format!("{k:?} is not a valid variable name"),
            ));
        }
        if v.contains('\0') {
            return Err(SpecError::invalid(
                object,
                format!("envs[{i}].value"),
                format!("the value of {k} holds a NUL byte"),
            ));
        }
        merged.push(format!("{k}={v}"));
    }
    Ok(replace_or_append(&e, &merged))
}

/// The working directory: the config's, else the image's, else `/`; it must be absolute.
pub fn cwd(object: &str, config_dir: &str, image_dir: &str) -> Result<String> {
    let (dir, field) = if !config_dir.is_empty() {
        (config_dir, "working_dir")
    } else if !image_dir.is_empty() {
        (image_dir, "image.working_dir")
    } else {
        ("/", "")
    };
    if !dir.starts_with('/') {
        return Err(SpecError::invalid(
            object,
            field,
            format!("{dir:?} is not an absolute path"),
        ));
    }
    Ok(dir.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    // containerd customopts.WithProcessArgs (Docker's daemon/commit.go rule)
    #[test]
    fn args_merge_table() {
        let ep = v(&["/ep", "-x"]);
        let cmd = v(&["serve", "--port=80"]);
        let empty_ep = v(&[""]);
        type Case<'a> = (
            Vec<String>,
            Vec<String>,
            &'a [String],
            &'a [String],
            Vec<String>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                v(&[]),
                v(&[]),
                &ep,
                &cmd,
                v(&["/ep", "-x", "serve", "--port=80"]),
            ),
            (v(&["/bin/sh"]), v(&[]), &ep, &cmd, v(&["/bin/sh"])),
            (
                v(&["/bin/sh"]),
                v(&["-c", "x"]),
                &ep,
                &cmd,
                v(&["/bin/sh", "-c", "x"]),
            ),
            (v(&[]), v(&["other"]), &ep, &cmd, v(&["/ep", "-x", "other"])),
            (v(&[]), v(&[]), &[], &cmd, v(&["serve", "--port=80"])),
            (v(&[]), v(&["a"]), &[], &cmd, v(&["a"])),
            (v(&[]), v(&[]), &empty_ep, &cmd, v(&["serve", "--port=80"])),
        ];
        for (command, a, entrypoint, icmd, want) in cases {
            let img = ImageProcess {
                entrypoint,
                cmd: icmd,
                ..Default::default()
            };
            assert_eq!(args("c", &command, &a, &img).expect("args"), want);
        }
        let e = args("c", &[], &[], &ImageProcess::default()).expect_err("none");
        assert!(e.to_string().contains("no command specified"), "{e}");
    }

    // containerd oci.replaceOrAppendEnvValues
    #[test]
    fn env_replace_or_append() {
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (&["A=1", "B=2"], &["B=3"], &["A=1", "B=3"]),
            (&["A=1"], &["C=3"], &["A=1", "C=3"]),
            (&["A=1", "B=2"], &["A"], &["B=2"]),
            (&["A=1"], &["X"], &["A=1"]),
            (&["A=1"], &["A=", "A=9"], &["A=9"]),
        ];
        for (d, o, want) in cases {
            assert_eq!(replace_or_append(&v(d), &v(o)), v(want), "{d:?} {o:?}");
        }
    }

    // buildLinuxSpec: WithDefaultPathEnv, WithTTY, HOSTNAME, image env, config env
    #[test]
    fn env_order_and_precedence() {
        let got = env(
            "c",
            "pod-a",
            true,
            &v(&["PATH=/img/bin", "LANG=C", "HOSTNAME=img"]),
            &[("LANG".into(), "en".into()), ("FOO".into(), "a=b".into())],
        )
        .expect("env");
        assert_eq!(
            got,
            v(&[
                "PATH=/img/bin",
                "TERM=xterm",
                "HOSTNAME=img",
                "LANG=en",
                "FOO=a=b"
            ])
        );
        let got = env("c", "h", false, &[], &[]).expect("env");
        assert_eq!(got, v(&[DEFAULT_PATH_ENV, "HOSTNAME=h"]));
        let e = env("c", "h", false, &[], &[("A=B".into(), "x".into())]).expect_err("bad key");
        assert!(e.to_string().contains("envs[0].key"), "{e}");
        let bad_value = [
            ("A".to_string(), "1".to_string()),
            ("SECRET".to_string(), "x\0y".to_string()),
        ];
        let e = env("c", "h", false, &[], &bad_value).expect_err("NUL in value");
        assert_eq!(e.field(), Some("envs[1].value"), "{e}");
        assert!(e.to_string().contains("SECRET"), "{e}");
    }

    #[test]
    fn cwd_precedence() {
        assert_eq!(cwd("c", "/w", "/i").expect("cwd"), "/w");
        assert_eq!(cwd("c", "", "/i").expect("cwd"), "/i");
        assert_eq!(cwd("c", "", "").expect("cwd"), "/");
        let e = cwd("c", "rel", "").expect_err("relative");
        assert!(e.to_string().contains("field working_dir"), "{e}");
        let e = cwd("c", "", "rel").expect_err("relative");
        assert!(e.to_string().contains("image.working_dir"), "{e}");
    }
}
