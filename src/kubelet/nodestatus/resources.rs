//! The node's capacity and allocatable as the MachineInfo setter computes them:
//! capacity from the machine, allocatable = capacity minus kube-reserved, system-reserved
//! and the hard eviction thresholds (GetNodeAllocatableReservation), never below zero,
//! and memory minus the huge pages set aside. Quantities are written in the canonical
//! form apimachinery gives them (`3977748Ki`, `1900m`, `110`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::kubelet::cm::quantity::Amount;

/// How a quantity is written, as apimachinery's `Format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DecimalSI,
    BinarySI,
}

/// A value in thousandths of a unit written canonically in `format`
/// (Quantity.CanonicalizeBytes).
pub fn format_milli(milli: i64, format: Format) -> String {
    let whole = milli % 1000 == 0;
    // Binary suffixes only for whole values of at least 1024: below that, or with a
    // fraction, apimachinery falls back to decimal to avoid rounding.
    if format == Format::BinarySI && whole && milli.unsigned_abs() / 1000 >= 1024 {
        let mut v = milli / 1000;
        let mut e = 0;
        while v % 1024 == 0 && e < 6 {
            v /= 1024;
            e += 1;
        }
        return format!("{v}{}", ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][e]);
    }
    if milli == 0 {
        return "0".into();
    }
    let mut v = milli;
    let mut e = 0; // index into the suffixes from milli up
    while v % 1000 == 0 && e < 7 {
        v /= 1000;
        e += 1;
    }
    format!("{v}{}", ["m", "", "k", "M", "G", "T", "P", "E"][e])
}

/// The quantity of `bytes` bytes (resource.NewQuantity(n, BinarySI)).
pub fn bytes(n: u64) -> Quantity {
    let milli = i64::try_from(n)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    Quantity(format_milli(milli, Format::BinarySI))
}

/// The format apimachinery gives each resource of a node's capacity.
pub fn format_of(resource: &str) -> Format {
    match resource {
        "cpu" | "pods" => Format::DecimalSI,
        _ => Format::BinarySI,
    }
}

/// A hard eviction threshold's value: an amount, or a share of the capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdValue {
    Quantity(Amount),
    /// As upstream's `float32` percentage (0.1 for 10%).
    Percentage(f32),
}

/// The hard eviction thresholds (--eviction-hard), by upstream's signal names. The
/// pressure conditions compare against them; memory.available and nodefs.available are
/// also reserved from allocatable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvictionHard {
    /// `memory.available`: MemoryPressure.
    pub memory_available: Option<ThresholdValue>,
    /// `nodefs.available` and `nodefs.inodesFree`: DiskPressure, on the root dir's
    /// filesystem.
    pub nodefs_available: Option<ThresholdValue>,
    pub nodefs_inodes_free: Option<ThresholdValue>,
    /// `imagefs.available` and `imagefs.inodesFree`: DiskPressure, on the filesystem the
    /// runtime's ImageFsInfo names.
    pub imagefs_available: Option<ThresholdValue>,
    pub imagefs_inodes_free: Option<ThresholdValue>,
    /// `pid.available`: PIDPressure.
    pub pid_available: Option<ThresholdValue>,
}

impl EvictionHard {
    /// Upstream's default on Linux: memory.available<100Mi, nodefs.available<10%,
    /// nodefs.inodesFree<5%, imagefs.available<15%.
    pub fn upstream_default() -> Self {
        EvictionHard {
            memory_available: Amount::parse("100Mi").map(ThresholdValue::Quantity),
            nodefs_available: Some(ThresholdValue::Percentage(0.1)),
            nodefs_inodes_free: Some(ThresholdValue::Percentage(0.05)),
            imagefs_available: Some(ThresholdValue::Percentage(0.15)),
            imagefs_inodes_free: None,
            pid_available: None,
        }
    }

    /// The threshold of a signal by its upstream name; None for a signal berth does not
    /// evaluate.
    pub fn slot(&mut self, signal: &str) -> Option<&mut Option<ThresholdValue>> {
        Some(match signal {
            "memory.available" => &mut self.memory_available,
            "nodefs.available" => &mut self.nodefs_available,
            "nodefs.inodesFree" => &mut self.nodefs_inodes_free,
            "imagefs.available" => &mut self.imagefs_available,
            "imagefs.inodesFree" => &mut self.imagefs_inodes_free,
            "pid.available" => &mut self.pid_available,
            _ => return None,
        })
    }
}

/// The reservations subtracted from capacity to give allocatable.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    /// --kube-reserved by resource name.
    pub kube_reserved: BTreeMap<String, Amount>,
    /// --system-reserved by resource name.
    pub system_reserved: BTreeMap<String, Amount>,
    /// --eviction-hard: memory.available is reserved from memory, nodefs.available from
    /// ephemeral-storage.
    pub eviction: EvictionHard,
}

impl Default for Reservation {
    /// Nothing reserved but upstream's default hard eviction thresholds.
    fn default() -> Self {
        Reservation {
            kube_reserved: BTreeMap::new(),
            system_reserved: BTreeMap::new(),
            eviction: EvictionHard::upstream_default(),
        }
    }
}

/// GetThresholdQuantity: a percentage is taken of the capacity's whole value, as
/// upstream does it in float64 from a float32 percentage.
fn threshold_milli(value: ThresholdValue, capacity_milli: i64) -> i64 {
    match value {
        ThresholdValue::Quantity(a) => a.milli_value(),
        ThresholdValue::Percentage(p) => {
            let whole = capacity_milli / 1000 + i64::from(capacity_milli % 1000 > 0);
            // The cast truncates toward zero as Go's int64() conversion does.
            ((whole as f64) * f64::from(p)) as i64 * 1000
        }
    }
}

/// The reservation per resource of `capacity` (GetNodeAllocatableReservation): system
/// plus kube reserved plus the hard eviction threshold, only where not zero.
pub fn reservation_milli(
    capacity: &BTreeMap<String, i64>,
    r: &Reservation,
) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (name, &cap) in capacity {
        let mut v = 0i64;
        for m in [&r.system_reserved, &r.kube_reserved] {
            if let Some(a) = m.get(name) {
                v = v.saturating_add(a.milli_value());
            }
        }
        let eviction = match name.as_str() {
            "memory" => r.eviction.memory_available,
            "ephemeral-storage" => r.eviction.nodefs_available,
            _ => None,
        };
        if let Some(t) = eviction {
            v = v.saturating_add(threshold_milli(t, cap));
        }
        if v != 0 {
            out.insert(name.clone(), v);
        }
    }
    out
}

/// Allocatable from capacity (both in thousandths): capacity minus the reservation,
/// never negative, and memory minus every huge page resource's allocatable.
pub fn allocatable_milli(
    capacity: &BTreeMap<String, i64>,
    r: &Reservation,
) -> BTreeMap<String, i64> {
    let reserved = reservation_milli(capacity, r);
    let mut out: BTreeMap<String, i64> = capacity
        .iter()
        .map(|(k, &v)| {
            let left = v.saturating_sub(reserved.get(k).copied().unwrap_or(0));
            (k.clone(), left.max(0))
        })
        .collect();
    let hugepages: i64 = out
        .iter()
        .filter(|(k, _)| k.starts_with("hugepages-"))
        .map(|(_, v)| *v)
        .sum();
    if hugepages != 0
        && let Some(mem) = out.get_mut("memory")
    {
        *mem = mem.saturating_sub(hugepages).max(0);
    }
    out
}

/// A resource list in thousandths as the API's quantities, each in its resource's format.
pub fn to_quantities(list: &BTreeMap<String, i64>) -> BTreeMap<String, Quantity> {
    list.iter()
        .map(|(k, &v)| (k.clone(), Quantity(format_milli(v, format_of(k)))))
        .collect()
}

/// A resource list of the API in thousandths; a quantity that does not parse counts as 0.
pub fn from_quantities(list: &BTreeMap<String, Quantity>) -> BTreeMap<String, i64> {
    list.iter()
        .map(|(k, q)| (k.clone(), Amount::of(q).milli_value()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amt(s: &str) -> Amount {
        Amount::parse(s).unwrap()
    }

    #[test]
    fn canonical_forms_match_apimachinery() {
        assert_eq!(format_milli(2000, Format::DecimalSI), "2");
        assert_eq!(format_milli(1900, Format::DecimalSI), "1900m");
        assert_eq!(format_milli(110_000, Format::DecimalSI), "110");
        assert_eq!(format_milli(2_000_000, Format::DecimalSI), "2k");
        assert_eq!(format_milli(1_500_000, Format::DecimalSI), "1500");
        assert_eq!(format_milli(0, Format::BinarySI), "0");
        assert_eq!(bytes(8_148_312_064).0, "7957336Ki");
        assert_eq!(bytes(2 * 1024 * 1024).0, "2Mi");
        assert_eq!(bytes(1 << 30).0, "1Gi");
        assert_eq!(bytes(1024).0, "1Ki");
        // Below 1024 and not a multiple of 1024: plain numbers.
        assert_eq!(bytes(1000).0, "1k");
        assert_eq!(bytes(1025).0, "1025");
        assert_eq!(format_milli(1500, Format::BinarySI), "1500m");
    }

    #[test]
    fn default_reservation_is_the_eviction_thresholds() {
        let cap = BTreeMap::from([
            ("cpu".to_string(), 2000),
            ("memory".to_string(), 8_148_312_064_000),
            ("ephemeral-storage".to_string(), 1_000_000_000_000),
            ("pods".to_string(), 110_000),
        ]);
        let a = allocatable_milli(&cap, &Reservation::default());
        assert_eq!(a["cpu"], 2000);
        assert_eq!(a["pods"], 110_000);
        assert_eq!(a["memory"], (8_148_312_064 - 104_857_600) * 1000);
        // 10% as float32 times the capacity in float64, truncated.
        let ten = (1_000_000_000f64 * f64::from(0.1f32)) as i64;
        assert_eq!(ten, 100_000_001);
        assert_eq!(a["ephemeral-storage"], (1_000_000_000 - ten) * 1000);
        assert_eq!(
            to_quantities(&a)["memory"].0,
            format!("{}Ki", (8_148_312_064u64 - 104_857_600) / 1024)
        );
    }

    #[test]
    fn reservations_add_up_and_never_go_negative() {
        let cap = BTreeMap::from([
            ("cpu".to_string(), 2000),
            ("memory".to_string(), 200 * 1024 * 1024 * 1000),
        ]);
        let r = Reservation {
            kube_reserved: BTreeMap::from([("cpu".into(), amt("100m"))]),
            system_reserved: BTreeMap::from([
                ("cpu".into(), amt("2")),
                ("memory".into(), amt("1Gi")),
            ]),
            ..Reservation::default()
        };
        let a = allocatable_milli(&cap, &r);
        assert_eq!(a["cpu"], 0);
        assert_eq!(a["memory"], 0);
        let r = Reservation {
            kube_reserved: BTreeMap::from([("cpu".into(), amt("100m"))]),
            ..Reservation::default()
        };
        assert_eq!(
            to_quantities(&allocatable_milli(&cap, &r))["cpu"].0,
            "1900m"
        );
    }

    #[test]
    fn huge_pages_come_out_of_allocatable_memory() {
        let cap = BTreeMap::from([
            ("memory".to_string(), 4096 * 1024 * 1024 * 1000),
            ("hugepages-2Mi".to_string(), 512 * 1024 * 1024 * 1000),
            ("hugepages-1Gi".to_string(), 0),
        ]);
        let mut r = Reservation::default();
        r.eviction.memory_available = None;
        let q = to_quantities(&allocatable_milli(&cap, &r));
        assert_eq!(q["memory"].0, "3584Mi");
        assert_eq!(q["hugepages-2Mi"].0, "512Mi");
        assert_eq!(q["hugepages-1Gi"].0, "0");
    }
}
