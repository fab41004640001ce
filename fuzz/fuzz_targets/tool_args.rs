//! Tool-argument decoding: any JSON object as any tool's arguments goes
//! through the registry's checks (unknown fields, schema, typed decode) to a
//! typed error or a decoded input — never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn registry() -> &'static vane_tools::registry::Registry {
    static R: OnceLock<vane_tools::registry::Registry> = OnceLock::new();
    R.get_or_init(vane_tools::handlers::registry)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let tools = registry().tools();
    let tool = &tools[pick as usize % tools.len()];
    let args = match serde_json::from_slice::<serde_json::Value>(rest) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => return,
    };
    if let Err(e) = registry().validate(tool.name, args) {
        assert!(!e.message.is_empty());
    }
});
