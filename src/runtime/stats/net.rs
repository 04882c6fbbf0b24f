//! Interface counters of a network namespace, from `/proc/<pid>/net/dev` of a process in
//! it (the pod's holder): the kernel prints the namespace of the process it is asked
//! about, so no setns is needed.

use std::path::Path;

use super::StatsError;

/// One interface's cumulative counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Parses the net/dev table (two header lines, then `name: 16 counters`).
pub fn parse_net_dev(text: &str) -> Option<Vec<InterfaceCounters>> {
    let mut out = vec![];
    for line in text.lines().skip(2) {
        let (name, rest) = line.split_once(':')?;
        let n: Vec<u64> = rest
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        if n.len() < 16 {
            return None;
        }
        out.push(InterfaceCounters {
            name: name.trim().to_owned(),
            rx_bytes: n[0],
            rx_packets: n[1],
            rx_errors: n[2],
            rx_dropped: n[3],
            tx_bytes: n[8],
            tx_packets: n[9],
            tx_errors: n[10],
            tx_dropped: n[11],
        });
    }
    Some(out)
}

/// The interfaces of the network namespace `pid` is in.
pub fn read_net_dev(proc_root: &Path, pid: i32) -> Result<Vec<InterfaceCounters>, StatsError> {
    let path = proc_root.join(pid.to_string()).join("net/dev");
    let text = std::fs::read_to_string(&path).map_err(|source| StatsError::Io {
        path: path.clone(),
        source,
    })?;
    parse_net_dev(&text).ok_or_else(|| StatsError::Parse {
        path,
        what: "interface table".into(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_table() {
        let t = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:    100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  eth0: 374082912   15732    5    2    0     0          0         0   898812    9330    7    3    0     0       0          0\n";
        let v = parse_net_dev(t).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[1],
            InterfaceCounters {
                name: "eth0".into(),
                rx_bytes: 374_082_912,
                rx_packets: 15732,
                rx_errors: 5,
                rx_dropped: 2,
                tx_bytes: 898_812,
                tx_packets: 9330,
                tx_errors: 7,
                tx_dropped: 3,
            }
        );
        assert!(parse_net_dev("h\nh\n eth0: 1 2 3\n").is_none());
    }

    #[test]
    fn reads_this_process_namespace() {
        let v = read_net_dev(Path::new("/proc"), std::process::id() as i32).unwrap();
        assert!(v.iter().any(|i| i.name == "lo"));
    }
}
