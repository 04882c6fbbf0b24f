//! Resource quantities (`500m`, `1Gi`, `2.5`, `1e3`) as exact amounts, the way
//! apimachinery's `resource.Quantity` reads them: precision below 10^-9 rounds up, and
//! `value()` / `milli_value()` round up to a whole unit as `Value()` / `MilliValue()` do.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// An amount in units of 10^-9 (nano), exact for every quantity the API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Amount(i128);

const NANO: i128 = 1_000_000_000;
/// Beyond this an amount saturates (far above any real resource: 2^63 whole units).
const MAX: i128 = (i64::MAX as i128) * NANO;

impl Amount {
    pub const ZERO: Amount = Amount(0);

    /// The quantity in `s`, or `None` when it is not a quantity.
    pub fn parse(s: &str) -> Option<Amount> {
        let s = s.trim();
        let (neg, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, suffix) = rest.split_at(num_end);
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return None;
        }
        // (base 10 exponent, power of 1024)
        let (exp10, exp1024): (i32, u32) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 1),
            "Mi" => (0, 2),
            "Gi" => (0, 3),
            "Ti" => (0, 4),
            "Pi" => (0, 5),
            "Ei" => (0, 6),
            e if e.starts_with(['e', 'E']) => (e[1..].parse().ok()?, 0),
            _ => return None,
        };
        // mantissa digits * 10^(exp10 - frac.len()) * 1024^exp1024, in nano units
        let digits: String = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        let mut exp = exp10 + 9 - i32::try_from(frac.len()).ok()?;
        let mut m: i128 = 0;
        for d in digits.bytes() {
            m = m.saturating_mul(10).saturating_add(i128::from(d - b'0'));
            if m > MAX {
                return Some(Amount(if neg { -MAX } else { MAX }));
            }
        }
        let mut v = m;
        for _ in 0..exp1024 {
            v = v.saturating_mul(1024);
        }
        while exp > 0 && v != 0 {
            v = v.saturating_mul(10);
            exp -= 1;
        }
        if exp < 0 {
            // below a nano: round up (away from zero, as Quantity does)
            let div = 10i128
                .checked_pow(u32::try_from(-exp).ok()?)
                .unwrap_or(i128::MAX);
            v = v / div + i128::from(v % div != 0);
        }
        let v = v.min(MAX);
        Some(Amount(if neg { -v } else { v }))
    }

    /// A quantity of the API; one that does not parse counts as zero (the API server
    /// rejects such a pod before it reaches a node; a static manifest is validated).
    pub fn of(q: &Quantity) -> Amount {
        Amount::parse(&q.0).unwrap_or_default()
    }

    /// Whole units, rounded up (`Value()`).
    pub fn value(self) -> i64 {
        ceil_div(self.0, NANO)
    }

    /// Thousandths, rounded up (`MilliValue()`).
    pub fn milli_value(self) -> i64 {
        ceil_div(self.0, NANO / 1000)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }
}

impl std::ops::Add for Amount {
    type Output = Amount;
    fn add(self, o: Amount) -> Amount {
        Amount(self.0.saturating_add(o.0).clamp(-MAX, MAX))
    }
}

impl std::ops::Sub for Amount {
    type Output = Amount;
    fn sub(self, o: Amount) -> Amount {
        Amount(self.0.saturating_sub(o.0).clamp(-MAX, MAX))
    }
}

fn ceil_div(a: i128, b: i128) -> i64 {
    let q = a / b + i128::from(a % b > 0);
    i64::try_from(q).unwrap_or(if q > 0 { i64::MAX } else { i64::MIN })
}

/// A resource list (`requests` or `limits`) as amounts by resource name.
pub type ResourceList = BTreeMap<String, Amount>;

/// The API's resource list as amounts.
pub fn list(m: Option<&BTreeMap<String, Quantity>>) -> ResourceList {
    m.into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), Amount::of(v)))
        .collect()
}

/// `addResourceList`: `to += from`, per resource.
pub fn add_list(to: &mut ResourceList, from: &ResourceList) {
    for (k, v) in from {
        let e = to.entry(k.clone()).or_default();
        *e = *e + *v;
    }
}

/// `maxResourceList`: `to = max(to, from)`, per resource.
pub fn max_list(to: &mut ResourceList, from: &ResourceList) {
    for (k, v) in from {
        let e = to.entry(k.clone()).or_insert(*v);
        if *v > *e {
            *e = *v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Amount {
        Amount::parse(s).unwrap_or_else(|| panic!("{s} does not parse"))
    }

    #[test]
    fn suffixes_as_apimachinery_reads_them() {
        assert_eq!(a("500m").milli_value(), 500);
        assert_eq!(a("0.5").milli_value(), 500);
        assert_eq!(a("2").milli_value(), 2000);
        assert_eq!(a("1.5").value(), 2, "Value() rounds up");
        assert_eq!(a("1Gi").value(), 1 << 30);
        assert_eq!(a("128Mi").value(), 128 << 20);
        assert_eq!(a("1G").value(), 1_000_000_000);
        assert_eq!(a("1k").value(), 1000);
        assert_eq!(a("1e3").value(), 1000);
        assert_eq!(a("1E3").value(), 1000);
        assert_eq!(a("100n").milli_value(), 1, "MilliValue() rounds up");
        assert_eq!(a("1u").value(), 1);
        assert_eq!(a("0").value(), 0);
        assert_eq!(a("-1").value(), -1);
        assert_eq!(a(".5").milli_value(), 500);
        assert_eq!(a("1.5Gi").value(), 3 << 29);
        assert_eq!(a("1Ei").value(), 1 << 60);
        assert_eq!(a("2Mi"), a("2097152"));
        assert_eq!(a("1000m"), a("1"));
        assert!(a("0m").is_zero());
    }

    #[test]
    fn nonsense_is_not_a_quantity() {
        for s in ["", "m", "1x", "1..2", "1Mb", "abc", "1 Gi", "1e"] {
            assert!(Amount::parse(s).is_none(), "{s}");
        }
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(a("99999999999999999999999Ei").value(), i64::MAX);
        assert_eq!(a("1e40").value(), i64::MAX);
    }

    #[test]
    fn lists_add_and_max() {
        let mut l = ResourceList::new();
        l.insert("cpu".into(), a("100m"));
        let mut o = ResourceList::new();
        o.insert("cpu".into(), a("200m"));
        o.insert("memory".into(), a("1Mi"));
        add_list(&mut l, &o);
        assert_eq!(l["cpu"].milli_value(), 300);
        let mut m = ResourceList::new();
        m.insert("cpu".into(), a("250m"));
        max_list(&mut m, &l);
        assert_eq!(m["cpu"].milli_value(), 300);
        assert_eq!(m["memory"].value(), 1 << 20);
    }
}
