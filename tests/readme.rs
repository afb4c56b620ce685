//! The README is the user's manual: it must list every reason code with its status.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use hopguard::reason::Reason;

#[test]
fn readme_lists_every_reason_with_its_status() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for r in Reason::ALL {
        let s = r.spec();
        let row = format!("| `{}` | {} |", s.code, s.status);
        assert!(readme.contains(&row), "README.md lacks the row starting {row:?}");
    }
}
