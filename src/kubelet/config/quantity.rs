//! Reading a resource quantity (`500m`, `1.5Gi`, `2e3`) as apimachinery's resource.Quantity
//! does, to validate it and to compare a request with its limit. Pure.

/// The grammar the API server states when a quantity does not parse.
pub(crate) const QUANTITY_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// The value of `s` in billionths of a unit (fractions below that rounded up, as the API
/// server rounds), saturating at the bounds of i128; None when `s` is not a quantity.
pub(crate) fn parse_nanos(s: &str) -> Option<i128> {
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = rest.split_at(number_len);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
        return None;
    }
    let (binary_pow, decimal_exp) = suffix_scale(suffix)?;
    let mut mantissa: i128 = 0;
    let mut exp10 = decimal_exp + 9 - frac_part.len() as i64;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        match mantissa.checked_mul(10) {
            Some(m) if m < i128::MAX / 1024 => mantissa = m + i128::from(b - b'0'),
            // Beyond i128's precision the last digits do not matter: scale instead.
            _ => exp10 += 1,
        }
    }
    let mut value = mantissa;
    for _ in 0..binary_pow {
        value = value.saturating_mul(2);
    }
    if exp10 >= 0 {
        for _ in 0..exp10.min(60) {
            value = value.saturating_mul(10);
        }
    } else {
        let divisor = 10i128
            .checked_pow(u32::try_from(-exp10).ok()?)
            .unwrap_or(i128::MAX);
        value = (value + divisor - 1) / divisor;
    }
    Some(if negative { -value } else { value })
}

/// (power of two, power of ten) of a suffix: `Ki` = (10, 0), `m` = (0, -3), `e3` = (0, 3).
fn suffix_scale(suffix: &str) -> Option<(u32, i64)> {
    let scale = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (0, exp.parse::<i64>().ok()?.clamp(-100, 100))
        }
    };
    Some(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_nanos("1"), Some(1_000_000_000));
        assert_eq!(parse_nanos("500m"), Some(500_000_000));
        assert_eq!(parse_nanos("0.5"), Some(500_000_000));
        assert_eq!(parse_nanos("1Ki"), Some(1024 * 1_000_000_000));
        assert_eq!(parse_nanos("1.5Gi"), Some(1_610_612_736 * 1_000_000_000));
        assert_eq!(parse_nanos("1k"), parse_nanos("1e3"));
        assert!(parse_nanos("129e6") > parse_nanos("128974848"));
        assert_eq!(parse_nanos("129M"), parse_nanos("129e6"));
        assert_eq!(parse_nanos("-1"), Some(-1_000_000_000));
        assert_eq!(parse_nanos("1n"), Some(1));
        assert_eq!(parse_nanos("0.1n"), Some(1), "rounded up");
    }

    #[test]
    fn not_quantities() {
        for bad in ["", "1x", "Gi", "1.2.3", "1Gib", "--1", "1e", "abc", "1 Gi"] {
            assert_eq!(parse_nanos(bad), None, "{bad}");
        }
    }
}
