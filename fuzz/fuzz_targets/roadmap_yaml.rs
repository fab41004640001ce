//! Roadmap YAML import: any text parses to a roadmap or a typed error; a
//! roadmap that parses exports to YAML that parses to the same roadmap.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((roadmap, _report)) = vane_core::roadmap::parse_yaml(text) {
        let again = vane_core::roadmap::to_yaml(&roadmap);
        let (back, _) = vane_core::roadmap::parse_yaml(&again)
            .unwrap_or_else(|e| panic!("an export does not re-import: {e:?}\n{again}"));
        assert_eq!(back.tasks.len(), roadmap.tasks.len());
    }
});
