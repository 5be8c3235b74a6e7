//! The hub's memory bound, selection, follow order and lag handling.

use std::{sync::Arc, time::Duration};

use super::*;
use crate::flows::{FlowVerdict, sample};

/// Records numbered by their length, alternating drop and allow.
fn records(range: std::ops::Range<u32>) -> Vec<Arc<FlowRecord>> {
    range
        .map(|n| {
            let verdict = if n % 2 == 0 {
                FlowVerdict::Drop
            } else {
                FlowVerdict::Allow
            };
            let mut record = sample(verdict, "frontend", "backend");
            record.length = n;
            Arc::new(record)
        })
        .collect()
}

fn lengths(records: &[Arc<FlowRecord>]) -> Vec<u32> {
    records.iter().map(|r| r.length).collect()
}

fn drops() -> FlowFilter {
    FlowFilter {
        verdict: Some(FlowVerdict::Drop),
        app: None,
    }
}

async fn next(follower: &mut Follower) -> Option<FollowEvent> {
    tokio::time::timeout(Duration::from_secs(5), follower.next())
        .await
        .expect("an event within 5 s")
}

fn record_length(event: Option<FollowEvent>) -> u32 {
    match event {
        Some(FollowEvent::Record(record)) => record.length,
        other => panic!("expected a record, got {other:?}"),
    }
}

#[test]
fn memory_holds_the_newest_records_up_to_the_capacity() {
    let hub = FlowHub::new(10, 16, None);
    hub.publish(&records(0..15));
    let all = hub.recent(&FlowFilter::default(), 100);
    assert_eq!(lengths(&all), (5..15).collect::<Vec<_>>());
    assert_eq!(hub.counts().received, 15, "received counts every record");
    assert_eq!(hub.counts().rate_limited, 0);
}

#[test]
fn recent_gives_the_newest_selected_records_oldest_first() {
    let hub = FlowHub::new(100, 16, None);
    hub.publish(&records(0..20));
    assert_eq!(lengths(&hub.recent(&drops(), 3)), vec![14, 16, 18]);
    let none = FlowFilter {
        verdict: None,
        app: Some("legacy-db".into()),
    };
    assert!(hub.recent(&none, 100).is_empty());
}

#[tokio::test]
async fn a_follower_gets_counts_then_backlog_then_new_records_once() {
    let hub = Arc::new(FlowHub::new(100, 16, None));
    hub.publish(&records(0..6));
    let mut follower = hub.follow(drops(), 2);
    hub.publish(&records(6..9));
    match next(&mut follower).await {
        Some(FollowEvent::Counts(counts)) => {
            assert_eq!(counts.counts.received, 9);
            assert_eq!(counts.missed, 0);
        }
        other => panic!("counts come first, got {other:?}"),
    }
    // Backlog: the two newest drops held when following began; then the new drops only.
    for expected in [2, 4, 6, 8] {
        assert_eq!(record_length(next(&mut follower).await), expected);
    }
    hub.close();
    assert_eq!(next(&mut follower).await, None, "closing ends the stream");
}

#[tokio::test]
async fn a_follower_that_lags_is_told_how_many_it_missed_and_goes_on() {
    let hub = Arc::new(FlowHub::new(100, 4, None));
    let mut follower = hub.follow(FlowFilter::default(), 0);
    assert!(matches!(
        next(&mut follower).await,
        Some(FollowEvent::Counts(_))
    ));
    // Ten records while the follower reads nothing: the channel keeps only four.
    hub.publish(&records(0..10));
    match next(&mut follower).await {
        Some(FollowEvent::Counts(counts)) => {
            assert_eq!(counts.missed, 6);
            assert_eq!(counts.counts.received, 10);
        }
        other => panic!("expected the missed count, got {other:?}"),
    }
    for expected in 6..10 {
        assert_eq!(record_length(next(&mut follower).await), expected);
    }
    assert_eq!(follower.missed(), 6);
    // Publishing did not wait for the follower, and the memory kept everything.
    assert_eq!(hub.recent(&FlowFilter::default(), 100).len(), 10);
}

#[tokio::test]
async fn a_follower_of_a_closed_hub_gets_nothing_after_the_counts() {
    let hub = Arc::new(FlowHub::new(10, 4, None));
    hub.publish(&records(0..3));
    hub.close();
    assert!(hub.is_closed());
    let mut follower = hub.follow(FlowFilter::default(), 10);
    assert!(matches!(
        next(&mut follower).await,
        Some(FollowEvent::Counts(_))
    ));
    // The backlog is still handed over, then the stream ends.
    for expected in 0..3 {
        assert_eq!(record_length(next(&mut follower).await), expected);
    }
    assert_eq!(next(&mut follower).await, None);
}
