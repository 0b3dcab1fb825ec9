//! Replays every file of `fuzz/corpus/egress_target/` through the fuzz target's property.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use portcullis_netpolicy::fuzzing::check_target;

#[test]
fn corpus_replays_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/egress_target");
    let mut n_files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Err(violation) = check_target(&data) {
            panic!("{}: {violation}", path.display());
        }
        n_files += 1;
    }
    assert!(n_files >= 20, "only {n_files} corpus files");
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_hold_the_property(data: Vec<u8>) {
        proptest::prop_assert_eq!(check_target(&data), Ok(()));
    }

    #[test]
    fn url_shaped_inputs_hold_the_property(
        flags in 0u8..4,
        host in "[a-zA-Z0-9.\\[\\]:%@_-]{0,40}",
        port in proptest::option::of("[+-]?[0-9]{0,6}"),
        tail in "[/?#@\\\\]?[ -~]{0,10}",
    ) {
        let mut text = format!("http://{host}");
        if let Some(port) = port {
            text.push(':');
            text.push_str(&port);
        }
        text.push_str(&tail);
        let mut data = vec![flags];
        data.extend_from_slice(text.as_bytes());
        proptest::prop_assert_eq!(check_target(&data), Ok(()));
        let mut connect = vec![flags | 1];
        connect.extend_from_slice(text.trim_start_matches("http://").as_bytes());
        proptest::prop_assert_eq!(check_target(&connect), Ok(()));
    }
}
