//! ARCHITECTURE.md must mention every workspace member's folder, so the map stays true.

#[test]
fn every_workspace_member_is_in_architecture_md() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let arch = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let members: Vec<&str> = manifest
        .split("members = [")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap()
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .collect();
    assert!(members.len() >= 6, "{members:?}");
    for m in members {
        assert!(arch.contains(&format!("`{m}/`")), "ARCHITECTURE.md does not mention `{m}/`");
    }
}
