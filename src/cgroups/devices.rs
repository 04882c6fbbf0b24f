//! Device rules on cgroup v2: an eBPF program of type CGROUP_DEVICE attached to the
//! container's cgroup, which the kernel runs on every device open and mknod.
//!
//! Written by hand: the program is a dozen instructions per rule, and no maintained
//! crate assembles cgroup device filters without pulling in a BPF toolchain.
//! Semantics match v1's devices.allow/deny lists: rules are checked from the last to the
//! first, the first match decides, and no match denies.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One rule: `kind` 'a', 'b' or 'c'; None for a wildcard number; `access` of r, w, m.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: String,
}

impl DeviceRule {
    /// Parses a v1 rule line such as `c 1:3 rwm` or `a *:* rwm`.
    pub fn parse(allow: bool, line: &str) -> Option<Self> {
        let mut it = line.split_whitespace();
        let kind = it.next()?.chars().next()?;
        let (maj, min) = it.next()?.split_once(':')?;
        let num = |s: &str| {
            if s == "*" {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        Some(Self {
            allow,
            kind,
            major: num(maj)?,
            minor: num(min)?,
            access: it.next().unwrap_or("rwm").to_string(),
        })
    }
}

/// One eBPF instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const MOV_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const EXIT: u8 = 0x95;

/// The program for `rules` (in spec order).
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    // r1 = ctx { u32 access_type (access << 16 | type); u32 major; u32 minor }
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND_K, 2, 0, 0, 0xffff), // r2 = type (1 block, 2 char)
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH_K, 3, 0, 0, 16), // r3 = access (1 mknod, 2 read, 4 write)
        insn(LDX_W, 4, 1, 4, 0),  // r4 = major
        insn(LDX_W, 5, 1, 8, 0),  // r5 = minor
    ];
    for r in rules.iter().rev() {
        let mut block = Vec::new();
        match r.kind {
            'b' => block.push((JNE_K, 2, 1)),
            'c' => block.push((JNE_K, 2, 2)),
            _ => {}
        }
        let mut mask = 0;
        for c in r.access.chars() {
            mask |= match c {
                'm' => 1,
                'r' => 2,
                'w' => 4,
                _ => 0,
            };
        }
        let access_check = mask != 7;
        if let Some(m) = r.major {
            block.push((JNE_K, 4, m as i32));
        }
        if let Some(m) = r.minor {
            block.push((JNE_K, 5, m as i32));
        }
        // every check jumps past this rule's end: the access check (3 insns), the
        // remaining checks and the 2-insn verdict
        let total = block.len() + if access_check { 3 } else { 0 } + 2;
        let mut emitted = 0usize;
        if access_check {
            // requested access must be within the rule's: (r3 & ~mask) == 0
            p.push(insn(MOV_X, 1, 3, 0, 0));
            p.push(insn(AND_K, 1, 0, 0, !mask & 7));
            emitted += 2;
            p.push(insn(JNE_K, 1, 0, (total - emitted - 1) as i16, 0));
            emitted += 1;
        }
        for (code, reg, imm) in block {
            p.push(insn(code, reg, 0, (total - emitted - 1) as i16, imm));
            emitted += 1;
        }
        p.push(insn(MOV_K, 0, 0, 0, i32::from(r.allow)));
        p.push(insn(EXIT, 0, 0, 0, 0));
        if total == 2 {
            // matches every access: what follows is unreachable (the verifier refuses it)
            return p;
        }
    }
    p.push(insn(MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// Runs `prog` on one access the way the kernel would (for tests of the generator).
pub fn evaluate(prog: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> bool {
    let ctx = [(access << 16) | kind, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    while pc < prog.len() {
        let i = prog[pc];
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        match i.code {
            LDX_W => r[dst] = u64::from(ctx[i.off as usize / 4]),
            AND_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
            RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
            MOV_X => r[dst] = r[src] as u32 as u64,
            MOV_K => r[dst] = i.imm as u32 as u64,
            JNE_K => {
                if r[dst] != i.imm as u32 as u64 {
                    pc += i.off as usize;
                }
            }
            EXIT => return r[0] == 1,
            _ => return false,
        }
        pc += 1;
    }
    false
}

#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    pad: [u8; 64],
}

#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    pad: [u8; 44],
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Loads the program for `rules` and attaches it to the cgroup2 directory `dir`.
pub fn attach(dir: &Path, rules: &[DeviceRule]) -> std::io::Result<()> {
    let prog = program(rules);
    let license = c"Apache-2.0";
    // Quietly first; only a refused program is loaded again for the verifier's log.
    let load = |log: &mut [u8]| -> libc::c_long {
        let attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: prog.len() as u32,
            insns: prog.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            log_buf: if log.is_empty() {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            kern_version: 0,
            prog_flags: 0,
            pad: [0; 64],
        };
        // SAFETY: bpf(2) reads the attr struct and the instruction, license and log
        // buffers it points to, all alive for the duration of the call.
        unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const ProgLoad,
                std::mem::size_of::<ProgLoad>(),
            )
        }
    };
    let fd = load(&mut []);
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        let mut log = vec![0u8; 1 << 16];
        let _ = load(&mut log);
        let text = String::from_utf8_lossy(&log);
        let last = text
            .trim_end_matches('\0')
            .lines()
            .last()
            .unwrap_or("")
            .to_string();
        return Err(std::io::Error::new(
            e.kind(),
            format!("load device filter: {e}: {last}"),
        ));
    }
    // SAFETY: the kernel just returned this fd to us.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cg = std::fs::File::open(dir)?;
    let at = ProgAttach {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
        pad: [0; 44],
    };
    // SAFETY: bpf(2) reads the attr struct; both fds are open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &at as *const ProgAttach,
            std::mem::size_of::<ProgAttach>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::other(format!(
            "attach device filter to {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        )));
    }
    // The attachment holds the program; our fds may close.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Vec<DeviceRule> {
        vec![
            DeviceRule::parse(false, "a *:* rwm").expect("rule"),
            DeviceRule::parse(true, "c 1:3 rwm").expect("rule"),
            DeviceRule::parse(true, "c 136:* rw").expect("rule"),
            DeviceRule::parse(true, "b 8:0 r").expect("rule"),
        ]
    }

    #[test]
    fn last_match_wins_and_default_denies() {
        let p = program(&rules());
        let (chr, blk) = (2, 1);
        let (m, r, w) = (1, 2, 4);
        assert!(evaluate(&p, chr, r | w, 1, 3));
        assert!(evaluate(&p, chr, m, 1, 3));
        assert!(!evaluate(&p, chr, r, 1, 5));
        assert!(evaluate(&p, chr, r, 136, 7));
        assert!(!evaluate(&p, chr, m, 136, 7), "m is not in rw");
        assert!(evaluate(&p, blk, r, 8, 0));
        assert!(!evaluate(&p, blk, w, 8, 0));
        assert!(!evaluate(&p, chr, r, 8, 0), "type must match");
        // a later deny overrides an earlier allow
        let mut rs = rules();
        rs.push(DeviceRule::parse(false, "c 1:3 w").expect("rule"));
        let p = program(&rs);
        assert!(evaluate(&p, chr, r, 1, 3));
        assert!(!evaluate(&p, chr, w, 1, 3));
    }
}
