//! What differs between two versions of a table.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One edit that turns the old version of a table into the new one.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Edit<'a, K, V> {
    /// The key is new or its value changed.
    Put(&'a K, &'a V),
    /// The key is gone.
    Delete(&'a K),
}

/// The edits from `before` to `after`, in key order; none when they are the same table.
pub(super) fn edits<'a, K: Ord, V: PartialEq>(
    before: &'a Arc<BTreeMap<K, V>>,
    after: &'a Arc<BTreeMap<K, V>>,
) -> Vec<Edit<'a, K, V>> {
    let mut edits = Vec::new();
    if Arc::ptr_eq(before, after) {
        return edits;
    }
    let mut old = before.iter().peekable();
    let mut new = after.iter().peekable();
    loop {
        let order = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((old_key, _)), Some((new_key, _))) => old_key.cmp(new_key),
        };
        match order {
            Ordering::Less => {
                if let Some((key, _)) = old.next() {
                    edits.push(Edit::Delete(key));
                }
            }
            Ordering::Greater => {
                if let Some((key, value)) = new.next() {
                    edits.push(Edit::Put(key, value));
                }
            }
            Ordering::Equal => {
                if let (Some((_, old_value)), Some((key, value))) = (old.next(), new.next())
                    && old_value != value
                {
                    edits.push(Edit::Put(key, value));
                }
            }
        }
    }
    edits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_name_added_changed_and_removed_keys_only() {
        let before = Arc::new(BTreeMap::from([(1, "a"), (2, "b"), (4, "d")]));
        let after = Arc::new(BTreeMap::from([(2, "b"), (3, "c"), (4, "D"), (5, "e")]));
        let expected = vec![
            Edit::Delete(&1),
            Edit::Put(&3, &"c"),
            Edit::Put(&4, &"D"),
            Edit::Put(&5, &"e"),
        ];
        assert_eq!(edits(&before, &after), expected);
        assert_eq!(edits(&before, &before.clone()), vec![]);
    }
}
