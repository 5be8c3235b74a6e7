//! Parsing, validation and filtering of the cf-networking policy API, without a socket.

use axum::http::StatusCode;

use super::{
    policies::{PolicyFilter, PolicyQuery, parse_policies, to_wire},
    wire::{ErrorBody, PolicyList},
};
use crate::model::{CfProtocol, NetworkPolicy};

fn body(destination: &str) -> String {
    format!(r#"{{"policies":[{{"source":{{"id":"frontend"}},"destination":{destination}}}]}}"#)
}

fn refusal(body: &str) -> String {
    let failure = parse_policies(body.as_bytes()).expect_err("should be refused");
    assert_eq!(
        failure.status,
        StatusCode::BAD_REQUEST,
        "{}",
        failure.message
    );
    failure.message
}

fn policy(source: &str, destination: &str) -> NetworkPolicy {
    NetworkPolicy {
        source: source.into(),
        destination: destination.into(),
        protocol: CfProtocol::Tcp,
        start_port: 8080,
        end_port: 8090,
    }
}

#[test]
fn valid_policy_becomes_a_model_policy() {
    let parsed = parse_policies(
        body(r#"{"id":"backend","protocol":"udp","ports":{"start":53,"end":53}}"#).as_bytes(),
    )
    .expect("valid");
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].source, "frontend");
    assert_eq!(parsed[0].destination, "backend");
    assert!(matches!(parsed[0].protocol, CfProtocol::Udp));
    assert_eq!((parsed[0].start_port, parsed[0].end_port), (53, 53));
}

#[test]
fn validation_messages_match_cf_networking() {
    let cases = [
        (r#"{"policies":[]}"#.to_string(), "missing policies"),
        ("{}".to_string(), "missing policies"),
        (
            r#"{"policies":[{"destination":{"id":"b","protocol":"tcp","ports":{"start":1,"end":1}}}]}"#
                .to_string(),
            "missing source id",
        ),
        (
            body(r#"{"protocol":"tcp","ports":{"start":1,"end":1}}"#),
            "missing destination id",
        ),
        (
            body(r#"{"id":"b","ports":{"start":1,"end":1}}"#),
            "invalid destination protocol, specify either udp or tcp",
        ),
        (
            body(r#"{"id":"b","protocol":"icmp","ports":{"start":1,"end":1}}"#),
            "invalid destination protocol, specify either udp or tcp",
        ),
        (
            body(r#"{"id":"b","protocol":"tcp","ports":{"start":9000,"end":8000}}"#),
            "invalid port range 9000-8000, start must be less than or equal to end",
        ),
        (
            body(r#"{"id":"b","protocol":"tcp","ports":{"start":-1,"end":80}}"#),
            "invalid start port -1, must be in range 1-65535",
        ),
        (
            body(r#"{"id":"b","protocol":"tcp","ports":{"start":0,"end":80}}"#),
            "missing start port",
        ),
        (body(r#"{"id":"b","protocol":"tcp"}"#), "missing start port"),
        (
            body(r#"{"id":"b","protocol":"tcp","ports":{"start":80,"end":65536}}"#),
            "invalid end port 65536, must be in range 1-65535",
        ),
        (
            body(r#"{"id":"b","tag":"0A","protocol":"tcp","ports":{"start":1,"end":1}}"#),
            "tags may not be specified",
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(
            refusal(&request),
            format!("mapper: validate policies: {expected}"),
            "request {request}"
        );
    }
}

#[test]
fn malformed_json_and_unknown_fields_are_named() {
    let message = refusal(r#"{"policies": ["#);
    assert!(message.starts_with("mapper: unmarshal json: "), "{message}");

    let message = refusal(&body(r#"{"id":"b","protocol":"tcp","port":8080}"#));
    assert!(message.contains("unknown field `port`"), "{message}");

    let message = refusal(r#"{"policies":[],"extra":1}"#);
    assert!(message.contains("unknown field `extra`"), "{message}");
}

#[test]
fn one_bad_policy_refuses_the_batch() {
    let request = r#"{"policies":[
        {"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","ports":{"start":1,"end":2}}},
        {"source":{"id":"a"},"destination":{"id":"c","protocol":"sctp","ports":{"start":1,"end":2}}}
    ]}"#;
    assert!(refusal(request).contains("invalid destination protocol"));
}

#[test]
fn listing_posted_back_is_accepted() {
    let listing = PolicyList {
        total_policies: 1,
        policies: vec![to_wire(&policy("frontend", "backend"))],
    };
    let json = serde_json::to_string(&listing).expect("encode");
    assert_eq!(
        json,
        r#"{"total_policies":1,"policies":[{"source":{"id":"frontend"},"destination":{"id":"backend","protocol":"tcp","ports":{"start":8080,"end":8090}}}]}"#
    );
    let parsed = parse_policies(json.as_bytes()).expect("accepted");
    assert_eq!(parsed.len(), 1);
}

#[test]
fn filters_follow_cf_networking_precedence() {
    let query = |id: Option<&str>, source: Option<&str>, dest: Option<&str>| {
        let json = serde_json::json!({"id": id, "source_id": source, "dest_id": dest});
        let query: PolicyQuery = serde_json::from_value(json).expect("query");
        PolicyFilter::from_query(&query)
    };
    let ab = policy("app1", "app2");
    let ca = policy("app3", "app1");
    let cd = policy("app3", "app4");
    let kept =
        |filter: PolicyFilter| -> Vec<bool> { [&ab, &ca, &cd].map(|p| filter.matches(p)).to_vec() };

    assert_eq!(kept(query(None, None, None)), [true, true, true]);
    assert_eq!(
        kept(query(Some("app1,app2"), None, None)),
        [true, true, false]
    );
    assert_eq!(
        kept(query(None, Some("app1,app2"), None)),
        [true, false, false]
    );
    assert_eq!(
        kept(query(None, None, Some("app1,app4"))),
        [false, true, true]
    );
    assert_eq!(
        kept(query(None, Some("app1,app3"), Some("app2,app4"))),
        [true, false, true]
    );
    // `id` wins over the others, as in the policy server.
    assert_eq!(
        kept(query(Some("app4"), Some("app1"), None)),
        [false, false, true]
    );
}

#[test]
fn error_body_is_cf_shaped() {
    let body = ErrorBody {
        error: "policy quota exceeded".into(),
    };
    assert_eq!(
        serde_json::to_string(&body).expect("encode"),
        r#"{"error":"policy quota exceeded"}"#
    );
}
