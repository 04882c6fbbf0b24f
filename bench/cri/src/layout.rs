//! `--text-layout FILE`: finds the functions berth's per-pod processes (the holders and
//! their zygote) run, and writes the linker script that packs them together,
//! src/runtime/holder/text.ld (docs/holder.md, "Code layout"). `scripts/text-layout.sh`
//! builds what it needs and runs it.
//!
//! Method. The berth binary must be a profiling build (`BERTH_TEXT_PROFILE=1`) in which
//! every function section starts on a 64 KiB boundary: the size of the kernel's read
//! fault-around window, so a process maps a function's pages only if it ran that function.
//! Pods then go through the holder's whole life (create, start, a log line, ExecSync, log
//! reopen, stop, remove). While the holders still run, their `/proc/<pid>/pagemap` and the
//! zygote's tell which pages of the binary's code they map, and `nm` which functions those
//! pages hold.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail, ensure};
use berth_integration_tests::cri::CriClient;

use crate::Pods;
use crate::target::Target;

/// The layout script of the berth binary.
pub const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../src/runtime/holder/text.ld"
);

/// How many of the functions `script` names exactly (see [`patterns`]) `binary` has: all
/// of them when it was built as the profiled one was; those it lacks are placed by path.
/// Returns (found, named).
pub fn exact_names_found(binary: &Path, script: &Path) -> anyhow::Result<(usize, usize)> {
    let text =
        std::fs::read_to_string(script).with_context(|| format!("read {}", script.display()))?;
    let named: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("*(.text.")?
                .split_once("* ")
                .map(|(p, _)| p)
        })
        .filter(|p| path_of(p).is_some())
        .collect();
    let symbols = Symbols::read(binary)?;
    let found = symbols
        .by_addr
        .iter()
        .map(|(_, _, n)| without_llvm_suffix(n))
        .filter(|n| named.contains(n))
        .collect::<BTreeSet<_>>()
        .len();
    Ok((found, named.len()))
}

/// The alignment of every function in a profiling build, and the fault-around window.
const WINDOW: u64 = 64 << 10;
const PAGE: u64 = 4096;

/// Runs `n` pods through the holder's life on `target` (berth, a profiling build at
/// `binary`), then writes the linker script to `out`. Returns (functions, patterns).
pub async fn profile(
    c: &mut CriClient,
    target: &Target<'_>,
    pods: &Pods,
    binary: &Path,
    n: usize,
    out: &Path,
) -> anyhow::Result<(usize, usize)> {
    ensure_profiling_build(binary)?;
    let symbols = Symbols::read(binary)?;
    let mut running = Vec::new();
    let mut procs = BTreeSet::new();
    let result = async {
        for i in 0..n.max(1) {
            let pod = pods.pod(&format!("layout-{i}"))?;
            let (id, cid, _) = pods.up(c, &pod).await?;
            running.push(id.clone());
            c.exec_sync(&cid, &["/bin/true"], 10).await?;
            c.reopen_container_log(&cid).await?;
            c.stop_container(&cid, 10).await?;
            c.remove_container(&cid).await?;
            for (_, pids) in target.pod_procs(c, &id).await?.roles {
                procs.extend(pids);
            }
        }
        let mut run = BTreeSet::new();
        for pid in &procs {
            run.extend(symbols.run_by(*pid, binary)?);
        }
        Ok::<_, anyhow::Error>(run)
    }
    .await;
    for id in &running {
        c.stop_pod_sandbox(id).await.context("StopPodSandbox")?;
        c.remove_pod_sandbox(id).await.context("RemovePodSandbox")?;
    }
    let run = result?;
    ensure!(
        !run.is_empty(),
        "the holders mapped no function of {}",
        binary.display()
    );
    let script = linker_script(run.iter().map(String::as_str));
    std::fs::write(out, &script.text).with_context(|| format!("write {}", out.display()))?;
    Ok((run.len(), script.patterns))
}

/// Refuses a binary whose code is not laid out one function per fault-around window: its
/// executable segment must be aligned to [`WINDOW`].
fn ensure_profiling_build(binary: &Path) -> anyhow::Result<()> {
    // Only the ELF header and the program headers are read: the binary is about 1 GiB.
    let file = std::fs::File::open(binary).with_context(|| format!("open {}", binary.display()))?;
    let read = |len: usize| -> anyhow::Result<Vec<u8>> {
        let mut head = Vec::with_capacity(len);
        (&file).take(len as u64).read_to_end(&mut head)?;
        Ok(head)
    };
    let le = |b: &[u8], o: usize, n: usize| -> Option<u64> {
        let bytes = b.get(o..o + n)?;
        Some(bytes.iter().rev().fold(0, |v, x| v << 8 | u64::from(*x)))
    };
    let header = read(64)?;
    ensure!(
        header.starts_with(b"\x7fELF\x02\x01"),
        "{} is not a little-endian ELF64 file",
        binary.display()
    );
    let bad = || anyhow::anyhow!("{}: truncated ELF headers", binary.display());
    let phoff = le(&header, 0x20, 8).ok_or_else(bad)? as usize;
    let entsize = le(&header, 0x36, 2).ok_or_else(bad)? as usize;
    let count = le(&header, 0x38, 2).ok_or_else(bad)? as usize;
    // from the start again, through the program headers (64 KiB at most: 65535 of 56 bytes
    // would be 3.5 MiB, but no linker writes more than a few dozen)
    let end = phoff + entsize * count;
    ensure!(
        end <= 64 << 10,
        "{}: program headers at {phoff}..{end}",
        binary.display()
    );
    (&file).seek(SeekFrom::Start(0))?;
    let elf = read(end)?;
    const PT_LOAD: u64 = 1;
    const PF_X: u64 = 1;
    for i in 0..count {
        let ph = phoff + i * entsize;
        let (kind, flags) = (
            le(&elf, ph, 4).ok_or_else(bad)?,
            le(&elf, ph + 4, 4).ok_or_else(bad)?,
        );
        if kind == PT_LOAD && flags & PF_X != 0 && le(&elf, ph + 48, 8).ok_or_else(bad)? >= WINDOW {
            return Ok(());
        }
    }
    bail!(
        "{} is not a profiling build (its code is not aligned to 64 KiB): build it with scripts/text-layout.sh",
        binary.display()
    )
}

/// The binary's function symbols from `nm`, by address.
struct Symbols {
    /// (address, size, mangled name), sorted.
    by_addr: Vec<(u64, u64, String)>,
}

impl Symbols {
    fn read(binary: &Path) -> anyhow::Result<Self> {
        let out = Command::new("nm")
            .args(["--defined-only", "--print-size"])
            .arg(binary)
            .output()
            .context("run nm (binutils)")?;
        ensure!(
            out.status.success(),
            "nm {}: {}",
            binary.display(),
            out.status
        );
        let mut by_addr: Vec<(u64, u64, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                match f[..] {
                    [addr, size, "t" | "T" | "w" | "W", name] => Some((
                        u64::from_str_radix(addr, 16).ok()?,
                        u64::from_str_radix(size, 16).ok()?,
                        name.to_string(),
                    )),
                    _ => None,
                }
            })
            .collect();
        by_addr.sort();
        Ok(Self { by_addr })
    }

    /// The functions whose code process `pid` maps: every symbol that overlaps a mapped
    /// page of `binary`'s executable mapping.
    fn run_by(&self, pid: u32, binary: &Path) -> anyhow::Result<BTreeSet<String>> {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .with_context(|| format!("read /proc/{pid}/maps"))?;
        let bin = std::fs::canonicalize(binary)?;
        let mut base = None;
        let mut code = Vec::new();
        for l in maps.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 || Path::new(f[5]) != bin {
                continue;
            }
            let (start, end) = f[0].split_once('-').context("maps line")?;
            let (start, end) = (
                u64::from_str_radix(start, 16)?,
                u64::from_str_radix(end, 16)?,
            );
            if u64::from_str_radix(f[2], 16)? == 0 {
                base.get_or_insert(start);
            }
            if f[1].contains('x') {
                code.push((start, end));
            }
        }
        let base = base.with_context(|| format!("{pid} does not map {}", bin.display()))?;
        let mut pagemap = std::fs::File::open(format!("/proc/{pid}/pagemap"))?;
        let mut run = BTreeSet::new();
        for (start, end) in code {
            let mut entries = vec![0u8; ((end - start) / PAGE * 8) as usize];
            pagemap.seek(SeekFrom::Start(start / PAGE * 8))?;
            pagemap.read_exact(&mut entries)?;
            for (i, e) in entries.chunks_exact(8).enumerate() {
                let present = u64::from_le_bytes(e.try_into()?) >> 63 == 1;
                if present {
                    let page = start + i as u64 * PAGE - base;
                    run.extend(self.overlapping(page, page + PAGE).map(str::to_string));
                }
            }
        }
        Ok(run)
    }

    fn overlapping(&self, from: u64, to: u64) -> impl Iterator<Item = &str> {
        // functions never span more than a few windows; look back that far
        let first = self
            .by_addr
            .partition_point(|(a, _, _)| *a + 16 * WINDOW < from);
        self.by_addr[first..]
            .iter()
            .take_while(move |(a, _, _)| *a < to)
            .filter(move |(a, size, _)| a + (*size).max(1) > from)
            .map(|(_, _, n)| n.as_str())
    }
}

/// A linker script and how many patterns it has.
struct Script {
    text: String,
    patterns: usize,
}

/// The two section patterns of a function symbol, both without LLVM's `.llvm.<digits>`
/// suffix (it changes with any change to the code around the function):
/// - exact: the rest of the name, which matches this function only in a build whose
///   dependency features resolve as the profiled one's (scripts/text-layout.sh builds
///   `-p berth -p berth-cni-plugins`, as scripts/demo.sh does);
/// - by path: without the `17h<16 hex digits>E` hash of legacy mangling as well. The hash
///   changes with the features a build resolves (`-p berth` and `--workspace` give other
///   hashes), the path does not; but a generic function's path matches all its instances.
fn patterns(symbol: &str) -> (String, String) {
    let base = without_llvm_suffix(symbol);
    // a suffix, if the build gives the function one
    let exact = format!("{base}*");
    match path_of(base) {
        Some(path) => (exact, format!("{path}17h*")),
        None => (exact.clone(), exact),
    }
}

/// A symbol without the `.llvm.<digits>` suffix LLVM gives a function it promotes.
fn without_llvm_suffix(symbol: &str) -> &str {
    match symbol.rsplit_once(".llvm.") {
        Some((head, digits))
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            head
        }
        _ => symbol,
    }
}

/// A legacy-mangled name without its `17h<16 hex digits>E` hash, if it has one.
fn path_of(name: &str) -> Option<&str> {
    let head = name.strip_prefix("_ZN").and(name.strip_suffix('E'))?;
    let (path, hash) = head.split_at_checked(head.len().checked_sub(19)?)?;
    (path.len() > 3 && hash.starts_with("17h") && hash[3..].bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(path)
}

/// The script: an output section `.text.holder`, placed before `.text`, with the sections
/// of the given functions (and of their cold copies, which LLVM names `.text.unlikely.*`):
/// by exact name first, then by path, so that where the exact names match, the other
/// instances a path brings come after the code the holders run.
fn linker_script<'a>(functions: impl Iterator<Item = &'a str>) -> Script {
    let (exact, by_path): (BTreeSet<String>, BTreeSet<String>) = functions
        // the program's entry and the C runtime's code are not in sections of their own
        .filter(|f| f.starts_with("_ZN") || f.starts_with("_R"))
        .map(patterns)
        .unzip();
    let by_path: Vec<&String> = by_path.iter().filter(|p| !exact.contains(*p)).collect();
    let mut text = String::from(
        "/* The code berth's holders and their zygote run, packed into one place so that each\n   \
         holder maps a few hundred KiB of the binary's code instead of pages all over it\n   \
         (docs/holder.md, \"Code layout\"). Written by scripts/text-layout.sh; build.rs\n   \
         passes it to the linker. Functions by their exact names, then by their paths (the\n   \
         hash that legacy mangling appends left out). A pattern that matches nothing only\n   \
         leaves that function where it was. */\nSECTIONS\n{\n  .text.holder :\n  {\n",
    );
    for p in exact.iter().chain(by_path.iter().copied()) {
        text.push_str(&format!("    *(.text.{p} .text.unlikely.{p})\n"));
    }
    text.push_str("  }\n}\nINSERT BEFORE .text;\n");
    Script {
        patterns: exact.len() + by_path.len(),
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_by_exact_name_and_by_path_without_hash_or_llvm_suffix() {
        assert_eq!(
            patterns("_ZN5berth7runtime6holder6server6Server3run17hf599bd2d512afd1bE"),
            (
                "_ZN5berth7runtime6holder6server6Server3run17hf599bd2d512afd1bE*".into(),
                "_ZN5berth7runtime6holder6server6Server3run17h*".into()
            )
        );
        assert_eq!(
            patterns(
                "_ZN5alloc7raw_vec11finish_grow17h788421ce402c82f0E.llvm.14178038269211214655"
            ),
            (
                "_ZN5alloc7raw_vec11finish_grow17h788421ce402c82f0E*".into(),
                "_ZN5alloc7raw_vec11finish_grow17h*".into()
            )
        );
        // v0 names carry no hash of that kind: one pattern
        let v0 = "_RNvNtCsjrHSEGnQ3l9_3std3env7args_os";
        assert_eq!(patterns(v0), (format!("{v0}*"), format!("{v0}*")));
        assert_eq!(
            patterns("_RINvNtCsgEmfK2I1SDS_4core3ptr13drop_in_placeB2_.llvm.3643936799275306673").1,
            "_RINvNtCsgEmfK2I1SDS_4core3ptr13drop_in_placeB2_*"
        );
        // not a hash, not an LLVM suffix: left alone
        assert_eq!(patterns("_ZN3foo3bar17hxyzE").1, "_ZN3foo3bar17hxyzE*");
        assert_eq!(patterns("memcpy.llvm.x").1, "memcpy.llvm.x*");
    }

    #[test]
    fn the_script_lists_exact_names_then_paths_each_with_its_cold_copy_before_text() {
        let s = linker_script(
            [
                "_ZN3foo3bar17h0123456789abcdefE",
                "_ZN3foo3bar17hfedcba9876543210E.llvm.42",
                "_start",
                "_RNvCs1_3foo3baz",
            ]
            .into_iter(),
        );
        assert_eq!(s.patterns, 4);
        let lines: Vec<&str> = s.text.lines().filter(|l| l.starts_with("    *(")).collect();
        assert_eq!(
            lines,
            [
                "    *(.text._RNvCs1_3foo3baz* .text.unlikely._RNvCs1_3foo3baz*)",
                "    *(.text._ZN3foo3bar17h0123456789abcdefE* .text.unlikely._ZN3foo3bar17h0123456789abcdefE*)",
                "    *(.text._ZN3foo3bar17hfedcba9876543210E* .text.unlikely._ZN3foo3bar17hfedcba9876543210E*)",
                "    *(.text._ZN3foo3bar17h* .text.unlikely._ZN3foo3bar17h*)",
            ]
        );
        assert!(!s.text.contains("_start"));
        assert!(s.text.ends_with("}\nINSERT BEFORE .text;\n"));
    }

    #[test]
    fn exact_names_are_found_in_the_binary_that_has_them() {
        let exe = std::env::current_exe().unwrap();
        let symbols = Symbols::read(&exe).unwrap();
        let own = symbols
            .by_addr
            .iter()
            .map(|(_, _, n)| n.as_str())
            .find(|n| path_of(n).is_some())
            .expect("a legacy-mangled function in the test binary");
        let script = linker_script([own, "_ZN3foo3bar17h0123456789abcdefE"].into_iter());
        let file = std::env::temp_dir().join(format!("layout-names-{}", std::process::id()));
        std::fs::write(&file, &script.text).unwrap();
        let found = exact_names_found(&exe, &file);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(found.unwrap(), (1, 2));
    }

    #[test]
    fn a_binary_that_is_not_a_profiling_build_is_refused() {
        let exe = std::env::current_exe().unwrap();
        let e = ensure_profiling_build(&exe).unwrap_err().to_string();
        assert!(e.contains("not a profiling build"), "{e}");
        let dir = std::env::temp_dir().join(format!("layout-test-{}", std::process::id()));
        std::fs::write(&dir, b"#!/bin/sh\n").unwrap();
        let e = ensure_profiling_build(&dir).unwrap_err().to_string();
        std::fs::remove_file(&dir).unwrap();
        assert!(e.contains("not a little-endian ELF64"), "{e}");
    }
}
