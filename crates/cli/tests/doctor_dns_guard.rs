//! End to end: `portcullis doctor` warns when the DNS guard is on and no policy permits
//! `@anonymous` (the subject of every DNS answer), so the guard would refuse every name.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use support::portcullis;

/// The `dns_guard` check of `doctor --json` for `config` (TOML), with `envs`.
fn dns_guard(config: &str, envs: &[(&str, &str)]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dns.cedar"),
        r#"permit (
  principal == Portcullis::Agent::"@anonymous",
  action in [Portcullis::Action::"net:host", Portcullis::Action::"net:domain"],
  resource
);
"#,
    )
    .unwrap();
    let config_path = dir.path().join("portcullis.toml");
    std::fs::write(&config_path, config).unwrap();
    let output = portcullis()
        .args(["doctor", "--json", "--config"])
        .arg(&config_path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let checks: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    checks
        .into_iter()
        .find(|check| check["id"] == "dns_guard")
        .expect("doctor reports dns_guard")
}

#[test]
fn doctor_warns_when_no_policy_lets_the_dns_guard_answer() {
    // Defaults: the guard listens and nothing permits `@anonymous`.
    let bare = dns_guard("", &[]);
    assert_eq!(bare["status"], "warn", "{bare}");
    let detail = bare["detail"].as_str().unwrap();
    assert!(
        detail.contains("refuses every name")
            && detail.contains("Portcullis::Agent::\"@anonymous\""),
        "the line says what to add: {detail}"
    );
    assert!(!detail.contains('\n'), "one line: {detail}");

    // The permit of docs/EGRESS.md (a path relative to the configuration file).
    let permitted = dns_guard("[policy]\ncedar_files = [\"dns.cedar\"]\n", &[]);
    assert_eq!(permitted["status"], "pass", "{permitted}");

    // An immutable deny beats the permit.
    let denied = dns_guard(
        "[policy]\ncedar_files = [\"dns.cedar\"]\ndeny = [\"net:domain:*\"]\n",
        &[],
    );
    assert_eq!(denied["status"], "warn", "{denied}");

    // No guard, nothing to warn about.
    let off = dns_guard("", &[("PORTCULLIS_EGRESS_DNS_BIND", "")]);
    assert_eq!(off["status"], "pass", "{off}");
}
