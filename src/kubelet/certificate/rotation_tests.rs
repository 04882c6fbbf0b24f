#![allow(clippy::unwrap_used)]

use std::time::UNIX_EPOCH;

use super::*;
use crate::kubelet::certificate::testutil::TestCa;

fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

#[test]
fn the_deadline_falls_between_70_and_90_percent() {
    let (nb, na) = (at(1_000), at(1_000 + 10_000));
    assert_eq!(rotation_deadline(nb, na, 0.0), at(8_000));
    assert_eq!(rotation_deadline(nb, na, 0.5), at(9_000));
    let late = rotation_deadline(nb, na, 0.999_999_9);
    assert!(late > at(9_999) && late < at(10_000), "{late:?}");
    for _ in 0..1000 {
        let d = rotation_deadline(nb, na, random_unit());
        assert!(d >= at(8_000) && d < at(10_000), "{d:?}");
    }
    // A certificate whose end is before its start rotates at once.
    assert_eq!(rotation_deadline(na, nb, 0.3), na);
}

#[test]
fn a_missing_forced_or_foreign_certificate_rotates_now() {
    let ca = TestCa::new();
    let now = at(2_000_000_000);
    let (cert, key) = ca.node_pair("n1");
    let good = CertPair::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let due = next_deadline(Some(&good), "n1", false, now, 0.0);
    assert_eq!(due, rotation_deadline(good.not_before, good.not_after, 0.0));
    assert_ne!(due, now);
    assert_eq!(next_deadline(Some(&good), "n1", true, now, 0.0), now);
    assert_eq!(next_deadline(Some(&good), "n2", false, now, 0.0), now);
    assert_eq!(next_deadline(None, "n1", false, now, 0.0), now);

    let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let no_group = ca.issue("system:node:n1", &["other"], &k, (2020, 1, 1), (2090, 1, 1));
    let no_group = CertPair::from_pem(no_group.as_bytes(), k.serialize_pem().as_bytes()).unwrap();
    assert!(!satisfies_template(&no_group, "n1"));
    let mut extra = CertPair::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    extra.organizations = vec!["other".into(), "system:nodes".into()];
    assert!(
        satisfies_template(&extra, "n1"),
        "extra orgs do not trigger a renewal"
    );
}

#[test]
fn retries_back_off_then_poll() {
    let secs: Vec<f64> = (0..7).map(|n| retry_delay(n, 0.0).as_secs_f64()).collect();
    assert_eq!(secs, [2.0, 4.0, 8.0, 16.0, 32.0, 32.0, 32.0]);
    assert_eq!(retry_delay(0, 1.0), Duration::from_millis(2200));
    assert_eq!(retry_delay(3, 0.5), Duration::from_millis(16_800));
    assert_eq!(retry_delay(u32::MAX, 0.5), RETRY_PERIOD);
}
