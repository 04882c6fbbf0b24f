//! Kubeconfig files for the clients of the fixture: admin (token or certificate), a node
//! (`system:node:<name>` client certificate), and a bootstrap-token kubeconfig.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// How a kubeconfig's user authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    Token(String),
    /// PEM certificate and key, embedded as client-certificate-data / client-key-data.
    Cert {
        cert_pem: String,
        key_pem: String,
    },
}

/// A kubeconfig for `server` trusting `ca_pem`, user `user` with `creds`.
pub fn render(server: &str, ca_pem: &str, user: &str, creds: &Credentials) -> String {
    let auth = match creds {
        Credentials::Token(t) => format!("    token: {t}\n"),
        Credentials::Cert { cert_pem, key_pem } => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            B64.encode(cert_pem),
            B64.encode(key_pem)
        ),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: berth-test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: {user}@berth-test\n  context:\n    cluster: berth-test\n    user: {user}\ncurrent-context: {user}@berth-test\nusers:\n- name: {user}\n  user:\n{auth}",
        ca = B64.encode(ca_pem),
    )
}
