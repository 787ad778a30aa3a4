//! Conformance checks of the inbox: items per device in order after a cursor, kept until
//! trimmed, surviving a restart, cursors never reused.

use super::*;
use crate::model::inbox::{InboxEvent, InboxRecord};

fn item(id: &str, device: &str) -> InboxRecord {
    InboxRecord {
        id: id.into(),
        device_id: device.into(),
        created_at: 1,
        event: InboxEvent::DelegationAccepted { delegation_id: format!("d-{id}") },
    }
}

pub fn inbox_items_per_device_after_a_cursor(f: &dyn Factory) {
    let s = f.fresh();
    assert!(s.inbox_after("dev-a", 0, 10).unwrap().is_empty());
    let a1 = s.push_inbox(&item("i1", "dev-a")).unwrap();
    let b1 = s.push_inbox(&item("i2", "dev-b")).unwrap();
    let a2 = s.push_inbox(&item("i3", "dev-a")).unwrap();
    assert!(a1 > 0 && a1 < a2 && b1 != a1 && b1 != a2, "increasing, never 0: {a1} {b1} {a2}");
    let ids = |v: Vec<(u64, InboxRecord)>| v.into_iter().map(|(_, i)| i.id).collect::<Vec<_>>();
    assert_eq!(ids(s.inbox_after("dev-a", 0, 10).unwrap()), vec!["i1", "i3"], "only the device's own, in order");
    assert_eq!(ids(s.inbox_after("dev-a", a1, 10).unwrap()), vec!["i3"]);
    assert_eq!(ids(s.inbox_after("dev-a", 0, 1).unwrap()), vec!["i1"], "limit");
    assert_eq!(s.inbox_after("dev-a", 0, 10).unwrap()[1], (a2, item("i3", "dev-a")), "the record whole");
    assert!(s.inbox_after("dev-a", a2, 10).unwrap().is_empty());

    assert_eq!(s.trim_inbox("dev-a", a1).unwrap(), 1);
    assert_eq!(ids(s.inbox_after("dev-a", 0, 10).unwrap()), vec!["i3"], "trimmed up to the cursor");
    assert_eq!(ids(s.inbox_after("dev-b", 0, 10).unwrap()), vec!["i2"], "another device's untouched");

    block_on(s.flush()).unwrap();
    let s = f.restart(s);
    assert_eq!(ids(s.inbox_after("dev-a", 0, 10).unwrap()), vec!["i3"], "durable");
    let a3 = s.push_inbox(&item("i4", "dev-a")).unwrap();
    assert!(a3 > a2, "a cursor is never reused after a restart: {a3} after {a2}");
    assert!(s.push_inbox(&item("i5", "")).is_err(), "no item for an empty device id");
}
