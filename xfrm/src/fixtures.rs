//! Test support: byte fixtures captured from iproute2 and the kernel by
//! `fixtures/capture.sh`.

/// Decodes `fixtures/NAME.hex`.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let text = text.trim();
    assert!(!text.is_empty() && text.len() % 2 == 0, "{path}: bad hex");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Asserts two requests are byte-identical except for the sequence number and port id,
/// which iproute2 draws from the clock and the kernel.
pub(crate) fn same_request(ours: &[u8], theirs: &[u8]) {
    assert_eq!(ours.len(), theirs.len(), "length differs");
    let mask = |b: &[u8]| {
        let mut b = b.to_vec();
        b[8..16].fill(0);
        b
    };
    let (o, t) = (mask(ours), mask(theirs));
    if o != t {
        let first = o.iter().zip(&t).position(|(x, y)| x != y).unwrap_or(0);
        panic!(
            "requests differ first at byte {first} (payload offset {}):\n ours   {}\n theirs {}",
            first as isize - 16,
            hex(&o[first.saturating_sub(8)..(first + 24).min(o.len())]),
            hex(&t[first.saturating_sub(8)..(first + 24).min(t.len())]),
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
