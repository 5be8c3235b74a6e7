//! Tests of the store: round trips, writing only what differs, refusing what it cannot trust.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::*;
use crate::model::{
    AppRecord, CfProtocol, Change, EgressRule, Limits, NativeRule, NetworkPolicy, NetworkRecord,
};
use crate::policy::{IcmpMatch, PortRange, Protocol};

/// A fresh directory under the system's temporary directory, removed on drop.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new(name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("firewall-store-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        TempDir(path)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn policy(source: &str, destination: &str, port: u16) -> NetworkPolicy {
    NetworkPolicy {
        source: source.into(),
        destination: destination.into(),
        protocol: CfProtocol::Tcp,
        start_port: port,
        end_port: port,
    }
}

fn apply(model: &Model, change: Change) -> Model {
    model
        .apply(&change, &Limits::default())
        .unwrap_or_else(|error| panic!("{change:?}: {error}"))
}

/// A model with `apps` apps of 2 addresses each, 3 policies from each, a network, and egress
/// rules for the first app.
fn populated(apps: u8) -> Model {
    let mut model = Model::new();
    for n in 0..apps {
        let app = AppRecord {
            name: format!("app-{n}"),
            org: Some("org".into()),
            space: None,
            ips: vec![
                format!("10.1.0.{n}").parse().unwrap(),
                format!("2001:db8::{n:x}").parse().unwrap(),
            ],
        };
        model = apply(&model, Change::RegisterApp(app));
        let policies = (1..=3)
            .map(|port| policy(&format!("app-{n}"), "app-0", port))
            .collect();
        model = apply(&model, Change::AddPolicies(policies));
    }
    let lan = NetworkRecord {
        name: "lan".into(),
        cidrs: vec!["192.168.0.0/16".parse().unwrap()],
    };
    model = apply(&model, Change::PutNetwork(lan));
    let rules: Vec<EgressRule> = serde_json::from_str(
        r#"[{"protocol":"tcp","destination":"198.19.10.0/24","ports":"1521,1522",
             "description":"oracle"},
            {"protocol":"icmp","destination":"198.19.0.1","type":0,"code":-1},
            {"protocol":"all","destination":"198.19.20.1-198.19.20.40"}]"#,
    )
    .unwrap();
    let app = "app-0".into();
    let model = apply(&model, Change::SetEgress { app, rules });
    let icmp = IcmpMatch {
        icmp_type: Some(3),
        code: Some(4),
    };
    let native = [
        ("world", "app-1", Protocol::Sctp(None)),
        ("app-1", "lan", Protocol::Icmp(icmp)),
        (
            "app-0",
            "world",
            Protocol::Udp(Some(PortRange { start: 53, end: 53 })),
        ),
    ];
    let native = native
        .into_iter()
        .map(|(source, destination, protocol)| NativeRule {
            source: source.into(),
            destination: destination.into(),
            protocol,
        })
        .collect();
    apply(&model, Change::AddRules(native))
}

#[test]
fn a_new_store_is_empty_private_and_reopens() {
    let dir = TempDir::new("new");
    let state = dir.path().join("state");
    let store = Store::open(&state).unwrap();
    assert_eq!(store.load().unwrap(), Model::new());
    assert_eq!(store.path(), state.join(FILE_NAME));
    let mode = fs::metadata(store.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(store);
    assert_eq!(Store::open(&state).unwrap().load().unwrap(), Model::new());
}

#[test]
fn a_committed_model_reads_back_the_same_after_reopening() {
    let dir = TempDir::new("round-trip");
    let model = populated(20);
    let store = Store::open(dir.path()).unwrap();
    store.commit(&Model::new(), &model).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded, model);
    assert_eq!(loaded.to_policy(), model.to_policy());

    // Removals are stored too.
    let smaller = apply(&loaded, Change::UnregisterApp("app-3".into()));
    let smaller = apply(&smaller, Change::DeleteNetwork("lan".into()));
    let app = "app-0".into();
    let smaller = apply(&smaller, Change::SetEgress { app, rules: vec![] });
    let smaller = apply(
        &smaller,
        Change::DeletePolicies(vec![policy("app-4", "app-0", 2)]),
    );
    store.commit(&loaded, &smaller).unwrap();
    drop(store);
    assert_eq!(Store::open(dir.path()).unwrap().load().unwrap(), smaller);
}

#[test]
fn a_commit_writes_only_the_rows_that_differ() {
    let dir = TempDir::new("only-diff");
    let model = populated(100);
    let store = Store::open(dir.path()).unwrap();
    store.commit(&Model::new(), &model).unwrap();

    // Change a row behind the model's back: a commit that rewrote every row would undo it.
    let marked = AppRecord {
        org: Some("marked".into()),
        ..model
            .apps()
            .find(|app| app.name == "app-50")
            .unwrap()
            .clone()
    };
    let txn = store.db.begin_write().unwrap();
    {
        let mut apps = txn.open_table(APPS).unwrap();
        let bytes = serde_json::to_vec(&marked).unwrap();
        apps.insert("app-50", bytes.as_slice()).unwrap();
    }
    txn.commit().unwrap();

    let changed = apply(
        &model,
        Change::AddPolicies(vec![policy("app-7", "app-9", 443)]),
    );
    let changed = apply(
        &changed,
        Change::DeletePolicies(vec![policy("app-8", "app-0", 1)]),
    );
    store.commit(&model, &changed).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(
        loaded.apps().find(|app| app.name == "app-50"),
        Some(&marked)
    );
    let new_policy = policy("app-7", "app-9", 443);
    assert_eq!(
        loaded.policy_rule_id(&new_policy),
        changed.policy_rule_id(&new_policy)
    );
    assert_eq!(loaded.policy_rule_id(&policy("app-8", "app-0", 1)), None);
    // Apart from the marked row, the store holds exactly the changed model.
    let unmarked = apply(
        &loaded,
        Change::RegisterApp(AppRecord {
            org: Some("org".into()),
            ..marked
        }),
    );
    assert_eq!(unmarked.to_policy(), changed.to_policy());
    assert!(unmarked.policies().eq(changed.policies()));
}

#[test]
fn committing_an_unchanged_model_writes_nothing_and_a_stale_one_is_refused() {
    let dir = TempDir::new("stale");
    let store = Store::open(dir.path()).unwrap();
    let empty = Model::new();
    store.commit(&empty, &empty).unwrap();
    let one = apply(&empty, Change::AddPolicies(vec![policy("a", "b", 1)]));
    store.commit(&empty, &one).unwrap();
    let other = apply(&empty, Change::AddPolicies(vec![policy("a", "c", 1)]));
    let error = store.commit(&empty, &other).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Diverged {
                stored: 1,
                expected: 0,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains(FILE_NAME), "{error}");
    assert_eq!(store.load().unwrap(), one);
}

#[test]
fn a_store_of_another_schema_version_is_refused() {
    let dir = TempDir::new("version");
    let store = Store::open(dir.path()).unwrap();
    let txn = store.db.begin_write().unwrap();
    txn.open_table(META)
        .unwrap()
        .insert(SCHEMA_KEY, 99)
        .unwrap();
    txn.commit().unwrap();
    drop(store);
    let error = Store::open(dir.path()).err().unwrap();
    assert!(
        matches!(
            error,
            StoreError::UnknownVersion {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(FILE_NAME) && message.contains("schema version 99"),
        "{message}"
    );
}

#[test]
fn inconsistent_content_is_reported_not_loaded() {
    let dir = TempDir::new("corrupt");
    let store = Store::open(dir.path()).unwrap();
    store.commit(&Model::new(), &populated(2)).unwrap();
    let txn = store.db.begin_write().unwrap();
    txn.open_table(IDENTITIES).unwrap().remove("app-1").unwrap();
    txn.commit().unwrap();
    let error = store.load().unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert!(
        error.to_string().contains("`app-1` has no identity"),
        "{error}"
    );
}

#[test]
fn a_second_open_of_the_same_store_is_refused() {
    let dir = TempDir::new("locked");
    let _store = Store::open(dir.path()).unwrap();
    let error = Store::open(dir.path()).err().unwrap();
    assert!(matches!(error, StoreError::Database { .. }), "{error}");
}
