use super::*;

fn reg() -> Registration {
    Registration {
        node_name: "n1".into(),
        hostname: "host1".into(),
        node_labels: BTreeMap::from([
            ("role".to_string(), "edge".to_string()),
            (LABEL_HOSTNAME.to_string(), "override".to_string()),
        ]),
        taints: vec![Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        }],
        unschedulable: false,
    }
}

fn q(s: &str) -> Quantity {
    Quantity(s.into())
}

#[test]
fn initial_node_has_the_default_and_given_labels_and_taints() {
    let n = initial_node(&reg());
    assert_eq!(n.metadata.name.as_deref(), Some("n1"));
    let l = n.metadata.labels.unwrap();
    assert_eq!(l[LABEL_HOSTNAME], "override");
    assert_eq!(l[LABEL_OS], "linux");
    assert_eq!(l[LABEL_BETA_OS], "linux");
    assert_eq!(l[LABEL_ARCH], go_arch());
    assert_eq!(l[LABEL_BETA_ARCH], go_arch());
    assert_eq!(l["role"], "edge");
    assert_eq!(
        n.metadata.annotations.unwrap()[ANNOTATION_CONTROLLER_MANAGED_ATTACH],
        "true"
    );
    let spec = n.spec.unwrap();
    assert_eq!(spec.taints.unwrap()[0].key, "dedicated");
    assert_eq!(spec.unschedulable, None);
}

#[test]
fn registering_cordoned_adds_the_unschedulable_taint_once() {
    let mut r = reg();
    r.unschedulable = true;
    let spec = initial_node(&r).spec.unwrap();
    assert_eq!(spec.unschedulable, Some(true));
    let keys: Vec<_> = spec.taints.unwrap().into_iter().map(|t| t.key).collect();
    assert_eq!(keys, ["dedicated", "node.kubernetes.io/unschedulable"]);
    r.taints = vec![];
    r.node_labels.clear();
    assert_eq!(initial_node(&r).spec.unwrap().taints.unwrap().len(), 1);
}

#[test]
fn existing_node_gets_default_labels_but_keeps_others() {
    let init = initial_node(&reg());
    let mut existing = Node::default();
    existing.metadata.labels = Some(BTreeMap::from([
        (LABEL_HOSTNAME.to_string(), "old".to_string()),
        ("team".to_string(), "a".to_string()),
    ]));
    existing.metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION_CONTROLLER_MANAGED_ATTACH.to_string(),
        "true".to_string(),
    )]));
    existing.spec = Some(NodeSpec {
        taints: Some(vec![]),
        ..Default::default()
    });
    assert!(reconcile_existing(&init, &mut existing));
    let l = existing.metadata.labels.as_ref().unwrap();
    assert_eq!(l[LABEL_HOSTNAME], "override");
    assert_eq!(l["team"], "a");
    assert_eq!(l[LABEL_OS], "linux");
    // --node-labels are not reconciled onto an existing Node, nor are taints.
    assert!(!l.contains_key("role"));
    assert_eq!(
        existing.spec.as_ref().unwrap().taints.as_deref(),
        Some(&[][..])
    );
    // A second pass has nothing left to do.
    assert!(!reconcile_existing(&init, &mut existing));
}

#[test]
fn missing_annotation_is_restored() {
    let init = initial_node(&reg());
    let mut existing = init.clone();
    existing.metadata.annotations = None;
    assert!(reconcile_existing(&init, &mut existing));
    assert_eq!(
        existing.metadata.annotations.unwrap()[ANNOTATION_CONTROLLER_MANAGED_ATTACH],
        "true"
    );
}

#[test]
fn huge_pages_are_added_updated_and_removed() {
    let mut init = initial_node(&reg());
    let st = init.status.get_or_insert_with(Default::default);
    st.capacity = Some(BTreeMap::from([
        ("memory".to_string(), q("4Gi")),
        ("hugepages-2Mi".to_string(), q("512Mi")),
    ]));
    st.allocatable = st.capacity.clone();
    let mut existing = init.clone();
    let est = existing.status.as_mut().unwrap();
    est.capacity = Some(BTreeMap::from([
        ("memory".to_string(), q("8Gi")),
        ("hugepages-2Mi".to_string(), q("0")),
        ("hugepages-1Gi".to_string(), q("1Gi")),
    ]));
    est.allocatable = est.capacity.clone();
    assert!(reconcile_existing(&init, &mut existing));
    let est = existing.status.as_ref().unwrap();
    let cap = est.capacity.as_ref().unwrap();
    assert_eq!(cap["hugepages-2Mi"].0, "512Mi");
    assert!(!cap.contains_key("hugepages-1Gi"));
    assert!(
        !est.allocatable
            .as_ref()
            .unwrap()
            .contains_key("hugepages-1Gi")
    );
    // memory is the status update's, not registration's.
    assert_eq!(cap["memory"].0, "8Gi");
    // Semantically equal quantities are no change.
    existing
        .status
        .as_mut()
        .unwrap()
        .capacity
        .as_mut()
        .unwrap()
        .insert("hugepages-2Mi".into(), q("536870912"));
    assert!(!reconcile_existing(&init, &mut existing));
}

#[test]
fn a_node_without_capacity_takes_the_initial() {
    let mut init = initial_node(&reg());
    init.status.get_or_insert_with(Default::default).capacity =
        Some(BTreeMap::from([("cpu".to_string(), q("2"))]));
    let mut existing = init.clone();
    existing.status = None;
    assert!(reconcile_existing(&init, &mut existing));
    assert_eq!(existing.status.unwrap().capacity.unwrap()["cpu"].0, "2");
}

#[test]
fn os_and_arch_labels_are_enforced() {
    let mut n = Node::default();
    assert!(ensure_os_arch_labels(&mut n));
    assert!(!ensure_os_arch_labels(&mut n));
    n.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(LABEL_OS.into(), "windows".into());
    assert!(ensure_os_arch_labels(&mut n));
    assert_eq!(n.metadata.labels.unwrap()[LABEL_OS], "linux");
}
