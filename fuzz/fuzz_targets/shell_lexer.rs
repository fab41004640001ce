//! The command policy's shell lexer: any command line is allowed or denied
//! with a rule — never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

fn policy() -> &'static vane_tools::policy::Policy {
    static P: OnceLock<vane_tools::policy::Policy> = OnceLock::new();
    P.get_or_init(|| {
        vane_tools::policy::Policy::new(Path::new("/ws"), true, &["npm publish".to_string()])
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(d) = policy().check(cmd, Path::new("/ws")) {
        assert!(!d.rule.is_empty());
    }
});
