//! The path resolver: whatever path an agent names, what it resolves to is
//! inside the workspace, and a write target is never vane's state, `.git`
//! or `vane.toml`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Ws {
    _dir: tempfile::TempDir,
    ws: vane_tools::confine::Workspace,
}

fn ws() -> &'static Ws {
    static W: OnceLock<Ws> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        for d in ["src/deep", ".git/hooks", ".vane/run"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("src/a.rs"), "x").unwrap();
        std::fs::write(root.join("vane.toml"), "").unwrap();
        std::fs::write(dir.path().join("outside"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        std::os::unix::fs::symlink(root.join("src"), root.join("in")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("rel-out")).unwrap();
        std::os::unix::fs::symlink("missing", root.join("dangling")).unwrap();
        let ws = vane_tools::confine::Workspace::new(&root, &root.join(".vane")).unwrap();
        Ws { _dir: dir, ws }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(p) = std::str::from_utf8(data) else {
        return;
    };
    let w = &ws().ws;
    if let Ok(r) = w.resolve(p) {
        assert!(r.starts_with(&w.root), "{p:?} resolved to {r:?}");
    }
    if let Ok(r) = w.resolve_for_write(p) {
        assert!(r.starts_with(&w.root), "{p:?} resolved to {r:?}");
        let rel = r.strip_prefix(&w.root).unwrap();
        assert!(!r.starts_with(&w.state_dir), "{p:?}");
        assert!(!rel.components().any(|c| c.as_os_str() == ".git"), "{p:?}");
        assert_ne!(rel, std::path::Path::new("vane.toml"), "{p:?}");
    }
});
