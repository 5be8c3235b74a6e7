//! Splitting a port range into the prefixes the policy trie can hold.

/// The aligned blocks that together cover exactly the ports `start..=end`, as
/// `(first port, prefix bits)` pairs: a block of `n` bits fixes the top `n` bits of the port
/// and spans `2^(16 - n)` ports starting at a multiple of that size. Blocks come in ascending
/// order and never overlap; an empty list when `start > end`.
///
/// Why blocks: the policy map is an LPM trie and the datapath makes one lookup per packet
/// however many rules there are. A trie entry can only match a prefix, so a range becomes the
/// fewest prefixes that tile it: at most 30 for any range (two per bit level but the top and
/// bottom), such as 16 for 1-65535, rather than one entry per port.
pub fn port_range_prefixes(start: u16, end: u16) -> Vec<(u16, u32)> {
    let mut blocks = Vec::new();
    let end = u32::from(end);
    let mut first = u32::from(start);
    while first <= end {
        // The largest block that starts at `first` (so is aligned there) and ends by `end`.
        let mut size_bits = first.trailing_zeros().min(16);
        while first + (1 << size_bits) - 1 > end {
            size_bits -= 1;
        }
        // `first <= end <= u16::MAX`, so the cast keeps every bit.
        blocks.push((first as u16, 16 - size_bits));
        first += 1 << size_bits;
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::port_range_prefixes;
    use proptest::prelude::*;

    /// Whether the block `(value, bits)` holds `port`.
    fn covers((value, bits): (u16, u32), port: u32) -> bool {
        let size = 1u32 << (16 - bits);
        (u32::from(value)..u32::from(value) + size).contains(&port)
    }

    /// Checks that `blocks` tile exactly `start..=end`, each aligned, at most 30 of them.
    fn assert_exact(start: u16, end: u16) {
        let blocks = port_range_prefixes(start, end);
        assert!(blocks.len() <= 30, "{start}-{end}: {} blocks", blocks.len());
        for &(value, bits) in &blocks {
            assert!(bits <= 16, "{start}-{end}: block {value}/{bits}");
            let size = 1u32 << (16 - bits);
            assert_eq!(
                u32::from(value) % size,
                0,
                "{start}-{end}: block {value}/{bits}"
            );
        }
        let count = |port: u32| blocks.iter().filter(|block| covers(**block, port)).count();
        for port in [u32::from(start), u32::from(end)] {
            assert_eq!(count(port), 1, "{start}-{end}: port {port}");
        }
        if let Some(below) = u32::from(start).checked_sub(1) {
            assert_eq!(count(below), 0, "{start}-{end}: port {below}");
        }
        assert_eq!(
            count(u32::from(end) + 1),
            0,
            "{start}-{end}: port {}",
            end + 1
        );
        // Blocks that follow one another without gap or overlap from `start` to `end` cover
        // every port of the range exactly once.
        let mut next = u32::from(start);
        for &(value, bits) in &blocks {
            assert_eq!(
                u32::from(value),
                next,
                "{start}-{end}: block {value}/{bits}"
            );
            next += 1u32 << (16 - bits);
        }
        assert_eq!(next, u32::from(end) + 1, "{start}-{end}");
    }

    #[test]
    fn splits_known_ranges_into_known_blocks() {
        assert_eq!(port_range_prefixes(8081, 8081), vec![(8081, 16)]);
        assert_eq!(
            port_range_prefixes(9000, 9010),
            vec![(9000, 13), (9008, 15), (9010, 16)]
        );
        assert_eq!(
            port_range_prefixes(1023, 1025),
            vec![(1023, 16), (1024, 15)]
        );
        assert_eq!(port_range_prefixes(0, 65535), vec![(0, 0)]);
        assert_eq!(port_range_prefixes(0x8000, 0xffff), vec![(0x8000, 1)]);
        assert_eq!(port_range_prefixes(1024, 2047), vec![(1024, 6)]);
        let all_but_zero = port_range_prefixes(1, 65535);
        assert_eq!(all_but_zero.len(), 16);
        assert_eq!(all_but_zero[0], (1, 16));
        assert_eq!(all_but_zero[15], (0x8000, 1));
    }

    #[test]
    fn reversed_range_gives_no_blocks() {
        assert!(port_range_prefixes(10, 9).is_empty());
    }

    #[test]
    fn worst_case_needs_thirty_blocks() {
        assert_eq!(port_range_prefixes(1, 65534).len(), 30);
    }

    #[test]
    fn hand_picked_ranges_are_covered_exactly() {
        let ranges = [
            (1, 1),
            (1, 65535),
            (0, 0),
            (0, 65535),
            (0x8000, 0x8000),
            (0x7fff, 0x8000),
            (1023, 1025),
            (9000, 9010),
            (65535, 65535),
            (65534, 65535),
            (1, 65534),
            (80, 443),
            (49152, 65535),
            (4096, 8191),
            (4095, 8192),
        ];
        for (start, end) in ranges {
            assert_exact(start, end);
        }
    }

    proptest! {
        #[test]
        fn random_ranges_are_covered_exactly(a in any::<u16>(), b in any::<u16>()) {
            assert_exact(a.min(b), a.max(b));
        }

        #[test]
        fn every_port_of_short_ranges_is_covered_once(start in any::<u16>(), len in 0u16..2048) {
            let end = start.saturating_add(len);
            assert_exact(start, end);
            let blocks = port_range_prefixes(start, end);
            for port in u32::from(start)..=u32::from(end) {
                let count = blocks.iter().filter(|block| covers(**block, port)).count();
                prop_assert_eq!(count, 1, "{}-{}: port {}", start, end, port);
            }
        }
    }
}
