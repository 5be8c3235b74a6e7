//! The `cf`-style commands against the daemon's socket: tables, `--json`, and exit codes
//! that tell a refusal, bad input and an unreachable daemon apart.

mod support;

use std::process::ExitCode;

use firewall::client::{self, ClientError};
use serde_json::{Value, json};
use support::api::*;

#[test]
fn client_commands_print_tables_and_json() {
    let daemon = Daemon::start("client");
    let added =
        daemon.client("add-network-policy frontend --destination-app backend --port 8080-8090");
    assert_eq!(
        added.expect("added"),
        "Added network policy from frontend to backend, tcp 8080-8090.\n"
    );
    let udp =
        "add-network-policy frontend --destination-app backend --protocol udp --port 53 --json";
    assert_eq!(daemon.client(udp).expect("added"), "{}\n");
    daemon
        .client("add-network-policy monitor --destination-app backend")
        .expect("cf defaults");
    assert_eq!(
        daemon.client("network-policies").expect("listed"),
        "Source    Destination  Protocol  Ports\n\
         frontend  backend      tcp       8080-8090\n\
         frontend  backend      udp       53\n\
         monitor   backend      tcp       8080\n"
    );
    let json = daemon
        .client("network-policies --source-app monitor --json")
        .expect("listed");
    let json: Value = serde_json::from_str(&json).expect("JSON");
    let monitor = policy("monitor", "backend", "tcp", 8080, 8080);
    assert_eq!(json, json!({"total_policies": 1, "policies": [monitor]}));
    let remove =
        "remove-network-policy monitor --destination-app backend --protocol tcp --port 8080";
    daemon.client(remove).expect("removed");
    assert!(
        !daemon
            .client("network-policies")
            .expect("listed")
            .contains("monitor")
    );

    let registered = daemon
        .client("register-app frontend --org bank --ip 198.18.1.10")
        .expect("app");
    assert!(
        registered.starts_with("Registered app frontend: policy revision "),
        "{registered}"
    );
    let apps = daemon.client("apps").expect("apps");
    let table =
        "Name      Org   Space  IPs          Identity\nfrontend  bank         198.18.1.10  ";
    assert!(apps.starts_with(table), "{apps}");
    daemon
        .client("add-network legacy-db --cidr 198.19.10.0/24")
        .expect("network");
    let networks = daemon.client("networks").expect("networks");
    assert!(
        networks.contains("\nlegacy-db  198.19.10.0/24  "),
        "{networks}"
    );

    let rules = daemon.dir.join("rules.json");
    let icmp = r#"[{"protocol":"icmp","destination":"0.0.0.0/0","type":8,"code":0}]"#;
    std::fs::write(&rules, icmp).expect("rules file");
    let set_rules = format!("set-egress-rules frontend --file {}", rules.display());
    daemon.client(&set_rules).expect("egress set");
    assert_eq!(
        daemon.client("egress-rules frontend").expect("egress"),
        "Protocol  Destination  Ports  Type  Code  Description\nicmp      0.0.0.0/0           8     0\n"
    );
    let status = daemon.client("status --json").expect("status");
    assert!(
        serde_json::from_str::<Value>(&status)
            .expect("JSON")
            .is_object()
    );
    assert!(
        daemon
            .client("status")
            .expect("status")
            .contains("policies:")
    );
}

#[test]
fn client_exit_codes_tell_refusal_bad_input_and_unreachable_daemon_apart() {
    let daemon = Daemon::start("client-errors");
    let refused = daemon.client("unregister-app ghost").expect_err("refused");
    assert!(
        matches!(refused, ClientError::Refused { status: 404, .. }),
        "{refused:?}"
    );
    assert_eq!(refused.exit_code(), 1);
    let quota: Vec<Value> = (1..=150)
        .map(|p| policy("busy", "b", "tcp", p, p))
        .collect();
    assert_eq!(daemon.post(POLICIES, &batch(&quota)).0, 200);
    let over = daemon
        .client("add-network-policy busy --destination-app c")
        .expect_err("quota");
    assert_eq!(
        (over.exit_code(), over.to_string()),
        (1, "policy quota exceeded".into())
    );

    let missing = daemon.dir.join("missing.json");
    let bad_file = format!("set-egress-rules a --file {}", missing.display());
    assert_eq!(
        daemon.client(&bad_file).expect_err("no file").exit_code(),
        2
    );

    let nowhere = daemon.dir.join("nobody-listens.sock");
    let unreachable = client::run(&nowhere, command("status"), &mut Vec::new());
    let unreachable = unreachable.expect_err("unreachable");
    assert_eq!(unreachable.exit_code(), 3);
    let hint = "start it with `firewall daemon` (or `systemctl start firewall`)";
    assert!(unreachable.to_string().contains(hint), "{unreachable}");
    let code = client::execute(&nowhere, command("apps")).expect("execute");
    assert_eq!(code, ExitCode::from(3));
}
