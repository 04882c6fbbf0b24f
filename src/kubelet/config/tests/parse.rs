use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::{HASH_ANNOTATION, SOURCE_ANNOTATION};
use super::{NODE, messages, parse};

const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  hostNetwork: false
  initContainers:
  - name: init
    image: busybox
    command: ["sh", "-c", "true"]
  containers:
  - name: nginx
    image: nginx:1.25
    ports:
    - name: http
      containerPort: 80
    env:
    - name: POD_NAME
      valueFrom:
        fieldRef: {fieldPath: metadata.name}
    resources:
      limits: {cpu: 500m, memory: 128Mi}
    livenessProbe:
      httpGet: {port: http}
    readinessProbe:
      tcpSocket: {port: 80}
      periodSeconds: 5
    volumeMounts:
    - {name: conf, mountPath: /etc/nginx/conf.d}
    - {name: cache, mountPath: /var/cache/nginx}
    - {name: logs, mountPath: /var/log/nginx}
  - name: sidecar
    image: localhost:5000/tools/sidecar
    lifecycle:
      preStop:
        httpGet: {port: 8080}
  - name: pinned
    image: busybox@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
  volumes:
  - name: conf
    configMap: {name: nginx-conf}
  - name: cache
  - name: logs
    hostPath: {path: /var/log/web}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: nginx-conf}
data:
  default.conf: "server { listen 80; }"
---
apiVersion: v1
kind: Secret
metadata: {name: token, namespace: kube-system}
stringData: {token: abc}
"#;

#[test]
fn realistic_manifest_is_defaulted_as_the_api_server_does() {
    let parsed = parse("/etc/kubernetes/manifests/web.yaml", WEB);
    assert_eq!(messages(&parsed.errors), Vec::<String>::new());
    assert_eq!(parsed.pods.len(), 1);
    let pod = &parsed.pods[0];
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
    assert_eq!(spec.enable_service_links, Some(true));
    assert_eq!(spec.security_context, Some(Default::default()));

    let nginx = &spec.containers[0];
    assert_eq!(nginx.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        nginx.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    assert_eq!(nginx.termination_message_policy.as_deref(), Some("File"));
    let ports = nginx.ports.as_ref().expect("ports");
    assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    assert_eq!(ports[0].host_port, None, "no host port without hostNetwork");
    let requests = nginx
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .expect("requests");
    assert_eq!(requests["cpu"].0, "500m", "requests default to limits");
    assert_eq!(requests["memory"].0, "128Mi");
    let field_ref = nginx.env.as_ref().expect("env")[0]
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref());
    assert_eq!(field_ref.and_then(|f| f.api_version.as_deref()), Some("v1"));
    let live = nginx.liveness_probe.as_ref().expect("liveness");
    assert_eq!(
        (
            live.timeout_seconds,
            live.period_seconds,
            live.success_threshold,
            live.failure_threshold
        ),
        (Some(1), Some(10), Some(1), Some(3))
    );
    let get = live.http_get.as_ref().expect("httpGet");
    assert_eq!(
        (get.path.as_deref(), get.scheme.as_deref()),
        (Some("/"), Some("HTTP"))
    );
    assert_eq!(get.port, IntOrString::String("http".into()));
    assert_eq!(
        nginx
            .readiness_probe
            .as_ref()
            .and_then(|p| p.period_seconds),
        Some(5),
        "given values kept"
    );

    let sidecar = &spec.containers[1];
    assert_eq!(
        sidecar.image_pull_policy.as_deref(),
        Some("Always"),
        "registry port is not a tag"
    );
    let pre_stop = sidecar
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.http_get.as_ref());
    assert_eq!(pre_stop.and_then(|g| g.path.as_deref()), Some("/"));
    assert_eq!(
        spec.containers[2].image_pull_policy.as_deref(),
        Some("IfNotPresent"),
        "digest, no tag"
    );
    let init = &spec.init_containers.as_ref().expect("init")[0];
    assert_eq!(
        init.image_pull_policy.as_deref(),
        Some("Always"),
        "no tag is latest"
    );

    let volumes = spec.volumes.as_ref().expect("volumes");
    assert_eq!(
        volumes[0].config_map.as_ref().and_then(|c| c.default_mode),
        Some(0o644)
    );
    assert_eq!(
        volumes[1].empty_dir,
        Some(Default::default()),
        "a volume without source is emptyDir"
    );
    assert_eq!(
        volumes[2]
            .host_path
            .as_ref()
            .and_then(|h| h.type_.as_deref()),
        Some("")
    );

    // Static pod treatment.
    let meta = &pod.metadata;
    assert_eq!(meta.name.as_deref(), Some("web-node1"));
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert_eq!(spec.node_name.as_deref(), Some(NODE));
    let uid = meta.uid.clone().expect("uid");
    assert_eq!(uid.len(), 32);
    let annotations = meta.annotations.as_ref().expect("annotations");
    assert_eq!(annotations[HASH_ANNOTATION], uid);
    assert_eq!(annotations[SOURCE_ANNOTATION], "file");
    let tolerations = spec.tolerations.as_ref().expect("tolerations");
    assert_eq!(tolerations.len(), 1);
    assert_eq!(tolerations[0].operator.as_deref(), Some("Exists"));
    assert_eq!(tolerations[0].effect.as_deref(), Some("NoExecute"));
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );

    // The objects of the same stream.
    let cm = parsed
        .objects
        .config_map("default", "nginx-conf")
        .expect("configmap");
    assert!(
        cm.data
            .as_ref()
            .is_some_and(|d| d.contains_key("default.conf"))
    );
    let secret = parsed
        .objects
        .secret("kube-system", "token")
        .expect("secret");
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
}

#[test]
fn host_network_ports_default_host_port() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: h}\nspec:\n  hostNetwork: true\n  containers:\n  - {name: a, image: a:1, ports: [{containerPort: 8080}]}\n";
    let parsed = parse("h.yaml", yaml);
    assert_eq!(messages(&parsed.errors), Vec::<String>::new());
    let ports = parsed.pods[0]
        .spec
        .as_ref()
        .and_then(|s| s.containers[0].ports.clone())
        .expect("ports");
    assert_eq!(ports[0].host_port, Some(8080));
}

#[test]
fn toleration_is_not_added_twice() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: t}\nspec:\n  tolerations: [{operator: Exists, effect: NoExecute}]\n  containers: [{name: a, image: a:1}]\n";
    let parsed = parse("t.yaml", yaml);
    let tolerations = parsed.pods[0]
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .expect("tolerations");
    assert_eq!(tolerations.len(), 1);
}

#[test]
fn octal_modes_read_as_yaml_1_1_does() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: m}\nspec:\n  containers: [{name: a, image: a:1}]\n  volumes:\n  - name: s\n    secret: {secretName: s, defaultMode: 0600, items: [{key: k, path: k, mode: 0400}]}\n";
    let parsed = parse("m.yaml", yaml);
    assert_eq!(messages(&parsed.errors), Vec::<String>::new());
    let secret = parsed.pods[0]
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|v| v[0].secret.clone())
        .expect("secret");
    assert_eq!(secret.default_mode, Some(0o600));
    assert_eq!(secret.items.expect("items")[0].mode, Some(0o400));
}

#[test]
fn list_from_a_url_is_an_http_source() {
    let yaml = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [{"name": "a", "image": "a:1"}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"}, "spec": {"containers": [{"name": "b", "image": "b:1"}]}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    ]}"#;
    let parsed = parse("http://127.0.0.1:8080/pods", yaml);
    assert_eq!(messages(&parsed.errors), Vec::<String>::new());
    assert_eq!(parsed.pods.len(), 2);
    for pod in &parsed.pods {
        let annotations = pod.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(annotations[SOURCE_ANNOTATION], "http");
        assert_eq!(
            pod.spec.as_ref().and_then(|s| s.tolerations.as_ref()),
            None,
            "only files get the toleration"
        );
    }
    assert!(parsed.objects.config_map("default", "c").is_some());
}

#[test]
fn a_bad_document_does_not_stop_the_others() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: a, image: a:1}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec: {containers: [{name: b}]}\n---\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: c}\nspec: {containers: [{name: c, image: c:1}]}\n";
    let parsed = parse("pods.yaml", yaml);
    let names: Vec<_> = parsed
        .pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(names, ["a-node1", "c-node1"]);
    assert_eq!(
        messages(&parsed.errors),
        ["pods.yaml: Pod \"b\": spec.containers[0].image: Required value"]
    );
}

#[test]
fn a_file_that_is_not_yaml_is_one_error_naming_the_file() {
    let parsed = parse(
        "broken.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a\n",
    );
    assert!(parsed.pods.is_empty());
    assert_eq!(parsed.errors.len(), 1);
    assert_eq!(parsed.errors[0].file, "broken.yaml");
    assert_eq!(parsed.errors[0].object, "");
    assert!(
        parsed.errors[0]
            .to_string()
            .starts_with("broken.yaml: invalid YAML: "),
        "{}",
        parsed.errors[0]
    );
}

#[test]
fn unknown_fields_are_named_at_every_depth() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: prod
  lables: {app: web}
  creationTimestamp: null
specs: {}
spec:
  containers:
  - name: a
    image: a:1
    imagePullPolcy: Always
    livenessProbe:
      httpGet: {port: 80, paht: /healthz}
    env:
    - {name: A, value: "1", valeu: "2"}
  volumes:
  - name: v
    hostPath: {path: /tmp, tpye: Directory}
"#;
    let parsed = parse("web.yaml", yaml);
    assert!(parsed.pods.is_empty());
    let mut got = messages(&parsed.errors);
    got.sort();
    let mut want: Vec<String> = [
        "metadata.lables",
        "spec.containers[0].env[0].valeu",
        "spec.containers[0].imagePullPolcy",
        "spec.containers[0].livenessProbe.httpGet.paht",
        "spec.volumes[0].hostPath.tpye",
        "specs",
    ]
    .iter()
    .map(|f| format!("web.yaml: Pod \"prod/web\": unknown field \"{f}\""))
    .collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn unknown_fields_of_objects_and_lists() {
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\ndta: {}\n---\napiVersion: v1\nkind: List\nitemz: []\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: s}, strngData: {}}\n";
    let parsed = parse("o.yaml", yaml);
    assert_eq!(
        messages(&parsed.errors),
        [
            "o.yaml: ConfigMap \"c\": unknown field \"dta\"",
            "o.yaml: document 2: unknown field \"itemz\"",
            "o.yaml: Secret \"s\": unknown field \"strngData\"",
        ]
    );
}

#[test]
fn type_errors_carry_the_field_path() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: a\n    image: a:1\n    ports: [{containerPort: eighty}]\n";
    let parsed = parse("web.yaml", yaml);
    assert_eq!(parsed.errors.len(), 1);
    let text = parsed.errors[0].to_string();
    assert!(
        text.starts_with("web.yaml: Pod \"web\": spec.containers[0].ports[0].containerPort: invalid type: string \"eighty\""),
        "{text}"
    );
    assert!(
        !text.contains(" at line "),
        "positions in the re-encoded text would mislead: {text}"
    );
}

#[test]
fn objects_without_name_or_kind_are_named_by_document() {
    let yaml = "apiVersion: v1\nkind: Pod\nspec: {containers: [{name: a, image: a:1}]}\n---\nmetadata: {name: x}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\n- 1\n";
    let parsed = parse("x.yaml", yaml);
    assert_eq!(
        messages(&parsed.errors),
        [
            "x.yaml: document 1: metadata.name: Required value: name or generateName is required",
            "x.yaml: document 2: Object 'Kind' is missing",
            "x.yaml: Deployment \"d\": unsupported object \"apps/v1\" \"Deployment\": manifests hold v1 Pods, ConfigMaps, Secrets and Lists of them",
            "x.yaml: document 4: not an object: a manifest holds Kubernetes objects",
        ]
    );
}

#[test]
fn static_pod_uid_is_stable_and_differs_per_node_and_source() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: a, image: a:1}]}\n";
    let uid = |file: &str, node: &str| {
        let parsed = super::super::parse_manifests(file, yaml.as_bytes(), node);
        parsed.pods[0].metadata.uid.clone().expect("uid")
    };
    assert_eq!(uid("/m/a.yaml", "node1"), uid("/m/a.yaml", "node1"));
    assert_ne!(uid("/m/a.yaml", "node1"), uid("/m/a.yaml", "node2"));
    assert_ne!(uid("/m/a.yaml", "node1"), uid("/m/b.yaml", "node1"));
    assert_ne!(uid("/m/a.yaml", "node1"), uid("http://h/a.yaml", "node1"));
    // As kubelet: a URL's UID does not depend on the node.
    assert_eq!(
        uid("http://h/a.yaml", "node1"),
        uid("http://h/a.yaml", "node2")
    );
    let changed = yaml.replace("a:1", "a:2");
    let other = super::super::parse_manifests("/m/a.yaml", changed.as_bytes(), "node1");
    assert_ne!(
        other.pods[0].metadata.uid.clone().expect("uid"),
        uid("/m/a.yaml", "node1")
    );
    // A UID given in the manifest is kept.
    let given = yaml.replace("name: a}", "name: a, uid: 1234}");
    let kept = super::super::parse_manifests("/m/a.yaml", given.as_bytes(), "node1");
    assert_eq!(kept.pods[0].metadata.uid.as_deref(), Some("1234"));
}

#[test]
fn node_name_is_lowercased_in_the_pod_name() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: a, image: a:1}]}\n";
    let parsed = super::super::parse_manifests("a.yaml", yaml.as_bytes(), "Node-A");
    assert_eq!(parsed.pods[0].metadata.name.as_deref(), Some("a-node-a"));
    assert_eq!(
        parsed.pods[0]
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref()),
        Some("Node-A")
    );
}
