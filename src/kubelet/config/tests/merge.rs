use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::super::merge::{Merger, run};
use super::super::parse::{SourceSet, parse_documents};
use super::super::{Desired, SEEN_ANNOTATION};
use super::{NODE, messages};

fn set(file: &str, yaml: &str) -> SourceSet {
    parse_documents(file, yaml.as_bytes(), NODE)
}

fn pod(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: a, image: {image}}}]}}\n"
    )
}

fn names(d: &Desired) -> Vec<String> {
    let mut names: Vec<String> = d
        .pods
        .values()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    names
}

#[test]
fn waits_for_every_source_then_merges_by_uid() {
    let mut m = Merger::new(2);
    assert!(
        m.update(0, set("/m/a.yaml", &pod("a", "a:1")), "t1")
            .is_none(),
        "source 1 not read yet"
    );
    let d = m
        .update(1, set("http://h/b", &pod("b", "b:1")), "t1")
        .expect("complete");
    assert_eq!(names(&d), ["a-node1", "b-node1"]);
    for (uid, p) in &d.pods {
        assert_eq!(p.metadata.uid.as_ref(), Some(uid));
    }
}

#[test]
fn each_update_replaces_the_whole_set_of_its_source() {
    let mut m = Merger::new(2);
    m.update(
        0,
        set("/m/a.yaml", &(pod("a", "a:1") + "---\n" + &pod("c", "c:1"))),
        "t1",
    );
    m.update(1, set("/m/b.yaml", &pod("b", "b:1")), "t1");
    let d = m
        .update(0, set("/m/a.yaml", &pod("a", "a:1")), "t2")
        .expect("complete");
    assert_eq!(names(&d), ["a-node1", "b-node1"], "c left its source");
    let d = m.update(0, SourceSet::default(), "t3").expect("complete");
    assert_eq!(names(&d), ["b-node1"]);
}

#[test]
fn first_seen_stays_while_the_uid_stays() {
    let mut m = Merger::new(1);
    let seen = |d: &Desired| -> Vec<String> {
        d.pods
            .values()
            .map(|p| p.metadata.annotations.as_ref().expect("annotations")[SEEN_ANNOTATION].clone())
            .collect()
    };
    let d = m
        .update(0, set("/m/a.yaml", &pod("a", "a:1")), "t1")
        .expect("complete");
    assert_eq!(seen(&d), ["t1"]);
    let d = m
        .update(0, set("/m/a.yaml", &pod("a", "a:1")), "t2")
        .expect("complete");
    assert_eq!(seen(&d), ["t1"], "same UID, same stamp");
    let d = m
        .update(0, set("/m/a.yaml", &pod("a", "a:2")), "t3")
        .expect("complete");
    assert_eq!(seen(&d), ["t3"], "new content is a new UID");
}

#[test]
fn duplicate_name_across_sources_is_rejected_naming_both() {
    let mut m = Merger::new(2);
    m.update(0, set("/m/a.yaml", &pod("web", "a:1")), "t");
    let d = m
        .update(1, set("/etc/b.yaml", &pod("web", "b:1")), "t")
        .expect("complete");
    assert_eq!(names(&d), ["web-node1"]);
    assert_eq!(
        messages(&d.errors),
        [
            "/etc/b.yaml: Pod \"web\": metadata.name: Duplicate value: \"default/web-node1\": already given by /m/a.yaml: Pod \"web\""
        ]
    );
}

#[test]
fn duplicate_uid_is_rejected_naming_both() {
    let a = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, uid: u1}\nspec: {containers: [{name: a, image: a:1}]}\n";
    let b = a.replace("name: a,", "name: b,");
    let mut m = Merger::new(2);
    m.update(0, set("/m/a.yaml", a), "t");
    let d = m.update(1, set("/m/b.yaml", &b), "t").expect("complete");
    assert_eq!(d.pods.len(), 1);
    assert_eq!(
        messages(&d.errors),
        [
            "/m/b.yaml: Pod \"b\": metadata.uid: Duplicate value: \"u1\": already given by /m/a.yaml: Pod \"a\""
        ]
    );
}

#[test]
fn duplicate_objects_are_rejected() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: one}\n";
    let mut m = Merger::new(2);
    m.update(0, set("/m/a.yaml", cm), "t");
    let d = m
        .update(1, set("/m/b.yaml", &cm.replace("one", "two")), "t")
        .expect("complete");
    let kept = d
        .objects
        .config_map("default", "c")
        .and_then(|c| c.data.clone())
        .expect("data");
    assert_eq!(kept["k"], "one");
    assert_eq!(
        messages(&d.errors),
        [
            "/m/b.yaml: ConfigMap \"c\": metadata.name: Duplicate value: \"default/c\": already given by /m/a.yaml: ConfigMap \"c\""
        ]
    );
}

#[test]
fn duplicates_within_one_stream() {
    let parsed = super::parse("/m/a.yaml", &(pod("a", "a:1") + "---\n" + &pod("a", "a:2")));
    assert_eq!(parsed.pods.len(), 1);
    assert_eq!(parsed.errors.len(), 1);
}

#[tokio::test]
async fn publishes_only_when_the_merged_set_changed() {
    let (utx, urx) = mpsc::unbounded_channel();
    let (dtx, mut drx) = watch::channel(Arc::new(Desired::default()));
    let task = tokio::spawn(run(Merger::new(1), urx, dtx));
    utx.send((0, set("/m/a.yaml", &pod("a", "a:1"))))
        .expect("send");
    drx.changed().await.expect("first state");
    assert_eq!(drx.borrow_and_update().pods.len(), 1);
    utx.send((0, set("/m/a.yaml", &pod("a", "a:1"))))
        .expect("send");
    utx.send((0, set("/m/a.yaml", &pod("a", "a:2"))))
        .expect("send");
    drx.changed().await.expect("second state");
    let d = drx.borrow_and_update().clone();
    let image = d
        .pods
        .values()
        .next()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.containers[0].image.clone());
    assert_eq!(image.as_deref(), Some("a:2"));
    utx.send((0, set("/m/a.yaml", &pod("a", "a:2"))))
        .expect("send");
    drop(utx);
    task.await.expect("merge ends with its sources");
    // changed() reports a value not yet seen even after the sender is gone.
    assert!(
        drx.changed().await.is_err(),
        "an unchanged set is not published again"
    );
}
