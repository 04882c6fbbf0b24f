//! What kubelet's kuberuntime sends as a container's resources, per QoS class, and what
//! the runtime writes for it: the cgroup values are read back from cgroupfs.

use std::path::PathBuf;

use anyhow::{Context, ensure};
use berth_integration_tests::cri::{self, ContainerSpec};

use super::{Target, remove_pod, run_pod, sleeper};

/// The page sizes the kernel offers, named as kubelet names them (libcontainer's
/// HugePageSizes: `hugepages-2048kB` is "2MB").
fn host_huge_page_sizes() -> Vec<String> {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut sizes: Vec<String> = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let (mut size, mut unit) = (kb, 1);
            while size >= 1024 && size % 1024 == 0 && unit + 1 < UNITS.len() {
                size /= 1024;
                unit += 1;
            }
            Some(format!("{size}{}", UNITS[unit]))
        })
        .collect();
    sizes.sort();
    sizes
}

/// A pure cgroup v2 host (kubelet's isCgroup2UnifiedMode).
fn unified_mode() -> bool {
    berth_integration_tests::cgroup::hierarchies()
        .iter()
        .all(|h| h.v2)
}

/// MemTotal in bytes (kubelet's machineInfo.MemoryCapacity).
fn memory_capacity() -> anyhow::Result<i64> {
    let info = std::fs::read_to_string("/proc/meminfo")?;
    let kb: i64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("MemTotal")?;
    Ok(kb * 1024)
}

/// One QoS class: the pod's cgroup below kubepods and the container's requests/limits.
struct Qos {
    class: &'static str,
    /// kubelet's pod cgroup parent below /kubepods ("" for Guaranteed).
    dir: &'static str,
    /// millicores (0: none)
    cpu_request: i64,
    cpu_limit: i64,
    /// bytes (0: none)
    memory_request: i64,
    memory_limit: i64,
}

/// kubelet's calculateLinuxResources, GetContainerOOMScoreAdjust,
/// GetHugepageLimitsFromResources and its swap helper for `q` (cpuCFSQuota on, the default
/// 100 ms period, no huge-page requests, NoSwap).
fn kubelet_resources(q: &Qos, capacity: i64) -> cri::api::LinuxContainerResources {
    let shares = if q.cpu_request == 0 && q.cpu_limit == 0 {
        2
    } else {
        let milli = if q.cpu_request == 0 {
            q.cpu_limit
        } else {
            q.cpu_request
        };
        (milli * 1024 / 1000).max(2)
    };
    let period = 100_000;
    let quota = if q.cpu_limit == 0 {
        0
    } else {
        (q.cpu_limit * period / 1000).max(1000)
    };
    let oom_score_adj = match q.class {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => (1000 - 1000 * q.memory_request / capacity).clamp(3, 999),
    };
    let mut r = cri::api::LinuxContainerResources {
        cpu_period: period,
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: q.memory_limit,
        oom_score_adj,
        hugepage_limits: host_huge_page_sizes()
            .into_iter()
            .map(|page_size| cri::api::HugepageLimit {
                page_size,
                limit: 0,
            })
            .collect(),
        ..Default::default()
    };
    if unified_mode() {
        // singleProcessOOMKill off (the v2 default) and NoSwap
        r.unified.insert("memory.oom.group".into(), "1".into());
        r.unified.insert("memory.swap.max".into(), "0".into());
    } else if std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
        r.memory_swap_limit_in_bytes = r.memory_limit_in_bytes;
    }
    r
}

/// The directory of the cgroup at `path` in the hierarchy holding `controller` (v1), or
/// in the unified tree.
fn cgroup_dir(controller: &str, path: &str) -> Option<PathBuf> {
    let hs = berth_integration_tests::cgroup::hierarchies();
    let h = hs
        .iter()
        .find(|h| !h.v2 && h.controllers.iter().any(|c| c == controller))
        .or_else(|| hs.iter().find(|h| h.v2 && unified_mode()))?;
    Some(h.mount.join(path.trim_start_matches('/')))
}

fn read(dir: &std::path::Path, file: &str) -> anyhow::Result<String> {
    let p = dir.join(file);
    Ok(std::fs::read_to_string(&p)
        .with_context(|| format!("read {}", p.display()))?
        .trim()
        .to_string())
}

/// kubelet's container resources for each QoS class (Guaranteed, Burstable, BestEffort),
/// with a huge-page limit of 0 for every page size the host offers and, on a pure v2
/// host, the unified map: CreateContainer succeeds whether or not the host can use a
/// hugetlb controller, and cpu, memory, huge pages and oom_score_adj land in cgroupfs
/// and /proc as asked.
pub async fn kubelet_resources_by_qos_class(
    c: &mut cri::CriClient,
    t: &Target,
) -> anyhow::Result<()> {
    let capacity = memory_capacity()?;
    let classes = [
        Qos {
            class: "Guaranteed",
            dir: "",
            cpu_request: 250,
            cpu_limit: 250,
            memory_request: 64 << 20,
            memory_limit: 64 << 20,
        },
        Qos {
            class: "Burstable",
            dir: "burstable/",
            cpu_request: 100,
            cpu_limit: 500,
            memory_request: 32 << 20,
            memory_limit: 128 << 20,
        },
        Qos {
            class: "BestEffort",
            dir: "besteffort/",
            cpu_request: 0,
            cpu_limit: 0,
            memory_request: 0,
            memory_limit: 0,
        },
    ];
    for q in &classes {
        let mut pod = t.pod(&format!("qos-{}", q.class.to_lowercase()));
        pod.cgroup_parent = format!("{}/kubepods/{}pod{}", t.cgroup_parent, q.dir, pod.uid);
        let id = run_pod(c, &pod).await?;
        let want = kubelet_resources(q, capacity);
        let spec: ContainerSpec = sleeper("app", t);
        let mut config = spec.config(&pod);
        if let Some(l) = config.linux.as_mut() {
            l.resources = Some(want.clone());
        }
        let cid = c
            .create_container(&id, &config, &pod.config())
            .await
            .with_context(|| format!("CreateContainer ({})", q.class))?;
        c.start_container(&cid)
            .await
            .with_context(|| format!("StartContainer ({})", q.class))?;
        let path = format!("{}/{cid}", pod.cgroup_parent);
        let what = |f: &str| format!("{} {f}", q.class);

        let cpu = cgroup_dir("cpu", &path).context("a cpu cgroup")?;
        let mem = cgroup_dir("memory", &path).context("a memory cgroup")?;
        if unified_mode() {
            let weight = 1 + (want.cpu_shares - 2) * 9999 / 262_142;
            ensure!(
                read(&cpu, "cpu.weight")? == weight.to_string(),
                what("cpu.weight")
            );
            let max = if want.cpu_quota > 0 {
                format!("{} {}", want.cpu_quota, want.cpu_period)
            } else {
                format!("max {}", want.cpu_period)
            };
            ensure!(read(&cpu, "cpu.max")? == max, what("cpu.max"));
            ensure!(
                read(&mem, "memory.oom.group")? == "1",
                what("memory.oom.group")
            );
        } else {
            ensure!(
                read(&cpu, "cpu.shares")? == want.cpu_shares.to_string(),
                "{}: {}",
                what("cpu.shares"),
                read(&cpu, "cpu.shares")?
            );
            ensure!(
                read(&cpu, "cpu.cfs_period_us")? == "100000",
                what("cpu.cfs_period_us")
            );
            let quota = if want.cpu_quota > 0 {
                want.cpu_quota.to_string()
            } else {
                "-1".into()
            };
            ensure!(
                read(&cpu, "cpu.cfs_quota_us")? == quota,
                "{}: {}",
                what("cpu.cfs_quota_us"),
                read(&cpu, "cpu.cfs_quota_us")?
            );
            let limit: i64 = read(&mem, "memory.limit_in_bytes")?.parse()?;
            if want.memory_limit_in_bytes > 0 {
                ensure!(limit == want.memory_limit_in_bytes, what("memory limit"));
                if want.memory_swap_limit_in_bytes > 0 {
                    let sw: i64 = read(&mem, "memory.memsw.limit_in_bytes")?.parse()?;
                    ensure!(sw == want.memory_swap_limit_in_bytes, what("memsw"));
                }
            } else {
                ensure!(limit > 1 << 62, "{}: {limit}", what("no memory limit"));
            }
        }
        // Huge pages: 0 for each size, where the host has a hugetlb controller to hold it.
        if let Some(h) = berth_integration_tests::cgroup::hierarchies()
            .iter()
            .find(|h| !h.v2 && h.controllers.iter().any(|c| c == "hugetlb"))
        {
            let dir = h.mount.join(path.trim_start_matches('/'));
            for size in host_huge_page_sizes() {
                let f = format!("hugetlb.{size}.limit_in_bytes");
                ensure!(read(&dir, &f)? == "0", what(&f));
            }
        }
        // oom_score_adj of the container's process: kubelet's value, raised to the
        // runtime's own where lowering needs CAP_SYS_RESOURCE (Guaranteed's -997 here).
        let pid = read(&mem, "cgroup.procs")?
            .lines()
            .next()
            .context("no process in the container's cgroup")?
            .to_string();
        let adj: i64 = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))?
            .trim()
            .parse()?;
        if q.class == "Guaranteed" {
            ensure!(
                (-997..=0).contains(&adj),
                "{}: {adj}",
                what("oom_score_adj")
            );
        } else {
            ensure!(
                adj == want.oom_score_adj,
                "{}: {adj}, want {}",
                what("oom_score_adj"),
                want.oom_score_adj
            );
        }
        c.stop_container(&cid, 0).await?;
        c.remove_container(&cid).await?;
        remove_pod(c, &id).await?;
    }
    // A pod that asks for huge pages on a host with no hugetlb controller to hold the limit:
    // berth refuses it naming the field; containerd (tolerate_missing_hugetlb_controller)
    // drops the limit and runs the container unlimited.
    let hugetlb_v1 = berth_integration_tests::cgroup::hierarchies()
        .iter()
        .any(|h| !h.v2 && h.controllers.iter().any(|c| c == "hugetlb"));
    if !hugetlb_v1 && !unified_mode() && t.name == "berth" {
        let pod = t.pod("qos-hugepages");
        let id = run_pod(c, &pod).await?;
        let mut config = sleeper("app", t).config(&pod);
        if let Some(l) = config.linux.as_mut() {
            let mut r = kubelet_resources(&classes[1], capacity);
            if let Some(h) = r.hugepage_limits.first_mut() {
                h.limit = 2 << 20;
            }
            l.resources = Some(r);
        }
        let e = c
            .create_container(&id, &config, &pod.config())
            .await
            .expect_err("a huge-page limit without hugetlb");
        ensure!(
            e.message().contains("hugepage_limits[0].limit"),
            "the error names the field: {e:?}"
        );
        remove_pod(c, &id).await?;
    }
    Ok(())
}
