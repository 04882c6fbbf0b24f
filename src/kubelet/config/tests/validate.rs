use super::{messages, parse};

/// The errors of one pod whose container list is `containers` (YAML flow or block text
/// indented under `spec:`), with `extra` spec fields.
fn errors(spec: &str) -> Vec<String> {
    let yaml = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n{spec}");
    let parsed = parse("web.yaml", &yaml);
    assert!(
        parsed.pods.is_empty() || parsed.errors.is_empty(),
        "a pod with errors is not loaded"
    );
    messages(&parsed.errors)
}

fn one(spec: &str, want: &str) {
    assert_eq!(errors(spec), [format!("web.yaml: Pod \"web\": {want}")]);
}

#[test]
fn valid_pod_has_no_error() {
    assert_eq!(
        errors("  containers: [{name: a, image: a:1}]\n"),
        Vec::<String>::new()
    );
}

#[test]
fn image_is_required() {
    one(
        "  containers: [{name: a}]\n",
        "spec.containers[0].image: Required value",
    );
}

#[test]
fn containers_are_required() {
    one("  containers: []\n", "spec.containers: Required value");
}

#[test]
fn pod_and_container_names_are_dns_names() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: Web_1}\nspec: {containers: [{name: a, image: a:1}]}\n";
    assert_eq!(
        messages(&parse("web.yaml", yaml).errors),
        [
            "web.yaml: Pod \"Web_1\": metadata.name: Invalid value: \"Web_1-node1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ]
    );
    one(
        "  containers: [{name: App, image: a:1}]\n",
        "spec.containers[0].name: Invalid value: \"App\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    );
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: My.NS}\nspec: {containers: [{name: a, image: a:1}]}\n";
    let got = messages(&parse("web.yaml", yaml).errors);
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("web.yaml: Pod \"My.NS/web\": metadata.namespace: Invalid value: \"My.NS\": a lowercase RFC 1123 label"), "{got:?}");
}

#[test]
fn container_names_are_unique_across_init_and_regular() {
    one(
        "  initContainers: [{name: app, image: a:1}]\n  containers: [{name: app, image: a:1}]\n",
        "spec.containers[0].name: Duplicate value: \"app\"",
    );
    one(
        "  containers: [{name: a, image: a:1}, {name: a, image: a:1}]\n",
        "spec.containers[1].name: Duplicate value: \"a\"",
    );
}

#[test]
fn bad_quantities() {
    one(
        "  containers: [{name: a, image: a:1, resources: {limits: {cpu: 1x}}}]\n",
        "spec.containers[0].resources.limits[cpu]: Invalid value: \"1x\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
    );
    one(
        "  containers: [{name: a, image: a:1, resources: {requests: {memory: -1Gi}}}]\n",
        "spec.containers[0].resources.requests[memory]: Invalid value: \"-1Gi\": must be greater than or equal to 0",
    );
}

#[test]
fn limits_are_at_least_requests() {
    one(
        "  containers: [{name: a, image: a:1, resources: {requests: {cpu: \"2\"}, limits: {cpu: \"1\"}}}]\n",
        "spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
    );
    one(
        "  containers: [{name: a, image: a:1, resources: {requests: {memory: 1Gi}, limits: {memory: 1000Mi}}}]\n",
        "spec.containers[0].resources.requests[memory]: Invalid value: \"1Gi\": must be less than or equal to memory limit of 1000Mi",
    );
    one(
        "  containers: [{name: a, image: a:1, resources: {requests: {example.com/gpu: \"1\"}, limits: {example.com/gpu: \"2\"}}}]\n",
        "spec.containers[0].resources.requests[example.com/gpu]: Invalid value: \"1\": must be equal to example.com/gpu limit of 2",
    );
    assert_eq!(
        errors(
            "  containers: [{name: a, image: a:1, resources: {requests: {cpu: 500m}, limits: {cpu: \"0.5\"}}}]\n"
        ),
        Vec::<String>::new()
    );
}

#[test]
fn probe_ports() {
    one(
        "  containers: [{name: a, image: a:1, livenessProbe: {httpGet: {port: 70000}}}]\n",
        "spec.containers[0].livenessProbe.httpGet.port: Invalid value: 70000: must be between 1 and 65535, inclusive",
    );
    one(
        "  containers: [{name: a, image: a:1, startupProbe: {httpGet: {port: Http_Port}}}]\n",
        "spec.containers[0].startupProbe.httpGet.port: Invalid value: \"Http_Port\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
    );
    assert_eq!(
        errors(
            "  containers: [{name: a, image: a:1, ports: [{name: http, containerPort: 80}], livenessProbe: {httpGet: {port: http}}}]\n"
        ),
        Vec::<String>::new()
    ); // A name the container does not declare passes, as the API server lets it: the
    // prober finds out (upstream throws such a probe's result away).
    assert_eq!(
        errors(
            "  containers: [{name: a, image: a:1, ports: [{name: http, containerPort: 80}], readinessProbe: {tcpSocket: {port: metrics}}}]\n"
        ),
        Vec::<String>::new()
    );
}

#[test]
fn probe_handlers_and_thresholds() {
    one(
        "  containers: [{name: a, image: a:1, livenessProbe: {periodSeconds: 3}}]\n",
        "spec.containers[0].livenessProbe: Required value: must specify a handler type",
    );
    one(
        "  containers: [{name: a, image: a:1, livenessProbe: {exec: {command: [true]}, tcpSocket: {port: 1}}}]\n",
        "spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
    );
    one(
        "  containers: [{name: a, image: a:1, livenessProbe: {exec: {command: [true]}, successThreshold: 2}}]\n",
        "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
    );
    one(
        "  initContainers: [{name: i, image: a:1, readinessProbe: {exec: {command: [true]}}}]\n  containers: [{name: a, image: a:1}]\n",
        "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
    );
    assert_eq!(
        errors(
            "  initContainers: [{name: i, image: a:1, restartPolicy: Always, readinessProbe: {exec: {command: [true]}}}]\n  containers: [{name: a, image: a:1}]\n"
        ),
        Vec::<String>::new(),
        "a sidecar may have probes"
    );
}

#[test]
fn restart_and_dns_policies() {
    one(
        "  restartPolicy: Sometimes\n  containers: [{name: a, image: a:1}]\n",
        "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
    );
    one(
        "  dnsPolicy: Google\n  containers: [{name: a, image: a:1}]\n",
        "spec.dnsPolicy: Unsupported value: \"Google\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
    );
    one(
        "  containers: [{name: a, image: a:1, imagePullPolicy: Sometimes}]\n",
        "spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
    );
    one(
        "  containers: [{name: a, image: a:1, restartPolicy: Always}]\n",
        "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers",
    );
}

#[test]
fn volumes() {
    one(
        "  containers: [{name: a, image: a:1}]\n  volumes: [{name: v, emptyDir: {}}, {name: v, emptyDir: {}}]\n",
        "spec.volumes[1].name: Duplicate value: \"v\"",
    );
    one(
        "  containers: [{name: a, image: a:1, volumeMounts: [{name: data, mountPath: /data}]}]\n",
        "spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
    );
    one(
        "  containers: [{name: a, image: a:1}]\n  volumes: [{name: v, emptyDir: {}, hostPath: {path: /tmp}}]\n",
        "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
    );
    one(
        "  containers: [{name: a, image: a:1}]\n  volumes: [{name: v, hostPath: {path: /tmp, type: Dir}}]\n",
        "spec.volumes[0].hostPath.type: Unsupported value: \"Dir\": supported values: \"\", \"BlockDevice\", \"CharDevice\", \"Directory\", \"DirectoryOrCreate\", \"File\", \"FileOrCreate\", \"Socket\"",
    );
    one(
        "  containers: [{name: a, image: a:1}]\n  volumes: [{name: v, secret: {secretName: s, defaultMode: 01000}}]\n",
        "spec.volumes[0].secret.defaultMode: Invalid value: 512: must be a number between 0 and 0777 (octal), both inclusive",
    );
    one(
        "  containers: [{name: a, image: a:1, volumeMounts: [{name: v, mountPath: /d}, {name: v, mountPath: /d}]}]\n  volumes: [{name: v}]\n",
        "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/d\": must be unique",
    );
}

#[test]
fn env_names_and_ports() {
    one(
        "  containers: [{name: a, image: a:1, env: [{name: \"A=B\", value: x}]}]\n",
        "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
    );
    assert_eq!(
        errors("  containers: [{name: a, image: a:1, env: [{name: my.var-1, value: x}]}]\n"),
        Vec::<String>::new(),
        "relaxed names, as the API server of 1.35"
    );
    one(
        "  containers: [{name: a, image: a:1, ports: [{containerPort: 0}]}]\n",
        "spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive",
    );
    one(
        "  containers: [{name: a, image: a:1, ports: [{containerPort: 53, protocol: ICMP}]}]\n",
        "spec.containers[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
    );
}
