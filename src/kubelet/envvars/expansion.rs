//! `$(VAR)` expansion as Kubernetes does it in env values, command, args and subPathExpr
//! (upstream third_party/forked/golang/expansion): `$$` is an escaped `$`, a reference
//! to an unknown name is left as written, an unclosed `$(` is kept literally.

/// Expands every `$(NAME)` in `input` with `mapping`; `mapping` returns `None` for an
/// unknown name, which keeps the reference as written.
pub fn expand(input: &str, mapping: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let Some(next) = after.chars().next() else {
            // A lone `$` at the end stays.
            out.push('$');
            rest = after;
            break;
        };
        match next {
            '$' => {
                out.push('$');
                rest = &after[1..];
            }
            '(' => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match mapping(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    // Unclosed: `$(` is written and reading goes on after it.
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            c => {
                out.push('$');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::expand;

    fn run(input: &str) -> String {
        let vars: BTreeMap<&str, &str> = [
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
        ]
        .into_iter()
        .collect();
        expand(input, |k| vars.get(k).map(|v| v.to_string()))
    }

    // The cases of upstream's expand_test.go TestMapReference/TestExpand.
    #[test]
    fn upstream_cases() {
        for (input, want) in [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_C)$(VAR_A)", "CA"),
            ("$(VAR_A)-$(VAR_B)-$(VAR_C)", "A-B-C"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
            ("$(VAR_A)$(VAR_B)", "AB"),
            ("$(VAR_A)$(VAR_B)$(VAR_C)", "ABC"),
            ("$(VAR_A)$$(VAR_B)$(VAR_C)", "A$(VAR_B)C"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$$$$$(VAR_A)", "$$A"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("$(VAR_EMPTY)", ""),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("foo$(UNKNOWN)bar", "foo$(UNKNOWN)bar"),
            ("$()", "$()"),
            ("$(", "$("),
            ("$(VAR_A", "$(VAR_A"),
            ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("$(VAR_A)$(VAR_B", "A$(VAR_B"),
            ("$", "$"),
            ("foo$", "foo$"),
            ("$$", "$"),
            ("$VAR_A", "$VAR_A"),
            ("$x$(VAR_A)", "$xA"),
            ("$é$(VAR_A)", "$éA"),
            ("${VAR_A}", "${VAR_A}"),
            ("", ""),
            ("no refs", "no refs"),
        ] {
            assert_eq!(run(input), want, "input {input:?}");
        }
    }
}
