//! Resource quantities and the downward API's `resourceFieldRef` (upstream
//! pkg/api/v1/resource ExtractContainerResourceValue): a container's limits or requests
//! divided by a divisor and rounded up, with unset limits taken from the node's
//! allocatable as upstream's MergeContainerResourceLimits does.

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// What the node offers to pods; stands in for unset (or zero) cpu and memory limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocatable {
    pub cpu_millis: i64,
    pub memory: i64,
}

/// A parsed quantity: `digits * 10^exp10 * 2^exp2`, negative when `negative`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    digits: i128,
    exp10: i32,
    exp2: u32,
    negative: bool,
}

fn parse(q: &str) -> Option<Parsed> {
    let s = q.trim();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(end);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return None;
    }
    let mut digits: i128 = 0;
    for c in int.chars().chain(frac.chars()) {
        digits = digits
            .checked_mul(10)?
            .checked_add(i128::from(c.to_digit(10)?))?;
    }
    let mut exp10 = -i32::try_from(frac.len()).ok()?;
    let mut exp2 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        s if s.starts_with(['e', 'E']) => exp10 += s[1..].parse::<i32>().ok()?,
        _ => return None,
    }
    Some(Parsed {
        digits,
        exp10,
        exp2,
        negative,
    })
}

impl Parsed {
    /// The value times 10^scale, rounded up away from zero, saturated to i64 (upstream
    /// Quantity.Value for scale 0, MilliValue for scale 3).
    fn scaled(self, scale: i32) -> i64 {
        let n = self.digits.checked_mul(1i128 << self.exp2.min(100));
        let e = self.exp10 + scale;
        let v = match n {
            None => i128::MAX,
            Some(n) if e >= 0 => 10i128
                .checked_pow(e.unsigned_abs())
                .and_then(|p| n.checked_mul(p))
                .unwrap_or(i128::MAX),
            Some(n) => match 10i128.checked_pow(e.unsigned_abs()) {
                Some(p) => n / p + i128::from(n % p != 0),
                None => i128::from(n != 0),
            },
        };
        let v = i64::try_from(v).unwrap_or(i64::MAX);
        if self.negative { -v } else { v }
    }
}

/// The quantity in whole units, rounded up (Quantity.Value); `None` when unparsable.
pub fn value(q: &Quantity) -> Option<i64> {
    parse(&q.0).map(|p| p.scaled(0))
}

/// The quantity in thousandths, rounded up (Quantity.MilliValue).
pub fn milli_value(q: &Quantity) -> Option<i64> {
    parse(&q.0).map(|p| p.scaled(3))
}

/// The value `sel` asks of a container: of `sel.containerName` in `pod` when set, else of
/// `own`. Errors are the reason alone; the caller names the pod and field.
pub fn resource_value(
    pod: &Pod,
    own: Option<&Container>,
    sel: &ResourceFieldSelector,
    alloc: Allocatable,
) -> Result<String, String> {
    let container = match sel.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .ok_or_else(|| format!("container {name} not found"))?,
        None => own.ok_or_else(|| "resourceFieldRef needs a containerName".to_string())?,
    };
    let divisor = match &sel.divisor {
        Some(d) if parse(&d.0).is_some_and(|p| p.digits != 0) => d.clone(),
        Some(d) if parse(&d.0).is_none() => return Err(format!("invalid divisor {:?}", d.0)),
        _ => Quantity("1".into()),
    };
    let (kind, name) = sel
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {}", sel.resource))?;
    let res = container.resources.as_ref();
    let list = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported container resource : {}", sel.resource)),
    };
    let set = |n: &str| -> Result<Option<&Quantity>, String> {
        match list.and_then(|l| l.get(n)) {
            Some(q) if parse(&q.0).is_none() => Err(format!("invalid quantity {:?} for {n}", q.0)),
            other => Ok(other),
        }
    };
    match name {
        "cpu" => {
            let millis = match nonzero(set("cpu")?) {
                Some(q) => milli_value(q).unwrap_or(0),
                None if kind == "limits" => alloc.cpu_millis,
                None => 0,
            };
            Ok(ceil_div(millis, milli_value(&divisor).unwrap_or(1)).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = match nonzero(set(name)?) {
                Some(q) => value(q).unwrap_or(0),
                // berth knows no allocatable ephemeral storage: an unset limit reads 0,
                // as upstream does when the node reports none.
                None if kind == "limits" && name == "memory" => alloc.memory,
                None => 0,
            };
            Ok(ceil_div(bytes, value(&divisor).unwrap_or(1)).to_string())
        }
        n if n.starts_with("hugepages-") => {
            let bytes = set(n)?.and_then(value).unwrap_or(0);
            Ok(ceil_div(bytes, value(&divisor).unwrap_or(1)).to_string())
        }
        _ => Err(format!("unsupported container resource : {}", sel.resource)),
    }
}

fn nonzero(q: Option<&Quantity>) -> Option<&Quantity> {
    q.filter(|q| parse(&q.0).is_some_and(|p| p.digits != 0))
}

/// ceil(a / b) as upstream's math.Ceil(float64(a) / float64(b)).
fn ceil_div(a: i64, b: i64) -> i64 {
    if b == 0 {
        return 0;
    }
    (a as f64 / b as f64).ceil() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    #[test]
    fn quantities() {
        assert_eq!(value(&q("128Mi")), Some(128 << 20));
        assert_eq!(value(&q("1G")), Some(1_000_000_000));
        assert_eq!(value(&q("1.5Gi")), Some(1_610_612_736));
        assert_eq!(value(&q("100m")), Some(1));
        assert_eq!(milli_value(&q("100m")), Some(100));
        assert_eq!(milli_value(&q("0.5")), Some(500));
        assert_eq!(milli_value(&q("2")), Some(2000));
        assert_eq!(milli_value(&q("1n")), Some(1));
        assert_eq!(value(&q("1e3")), Some(1000));
        assert_eq!(value(&q("12E")), Some(i64::MAX));
        assert_eq!(value(&q("1x")), None);
        assert_eq!(value(&q("")), None);
        assert_eq!(value(&q(".")), None);
    }
}
