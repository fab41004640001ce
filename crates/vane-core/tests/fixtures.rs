//! The two real roadmaps of the upstream orchestrator (in `../shared/fixtures`)
//! import without losing a task or a field, and their graph problems are reported.

use std::path::PathBuf;

use vane_core::roadmap::{parse_yaml, to_yaml};

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/roadmaps")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn count_ids(v: &serde_json::Value, out: &mut usize) {
    // every mapping under a `tasks` list is one task
    match v {
        serde_json::Value::Object(m) => {
            for (k, c) in m {
                if k == "tasks" {
                    if let serde_json::Value::Array(a) = c {
                        *out += a.len();
                    }
                }
                count_ids(c, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|c| count_ids(c, out)),
        _ => {}
    }
}

#[test]
fn older_roadmap_imports_whole() {
    let text = fixture("weathervane-2025-10-14.yaml");
    let (r, rep) = parse_yaml(&text).unwrap();
    let raw: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    let mut n = 0;
    count_ids(&raw, &mut n);
    assert_eq!(r.tasks.len(), n);
    assert_eq!(r.tasks.len(), 80);
    assert_eq!(rep.epics, 11);
    assert!(rep
        .dangling_dependencies
        .iter()
        .any(|d| d.task_id == "T9.3.2" && d.dependency == "E5"));
    // odd exit criteria such as `tests: path` are kept
    let t = r.tasks.iter().find(|t| t.id == "T3.4.1").unwrap();
    assert!(to_yaml(&r).contains("tests/web/test_plan_page.spec.ts"));
    assert!(!t.exit_criteria.is_empty());
}

#[test]
fn newer_roadmap_with_sets_and_top_level_tasks_imports_whole() {
    let text = fixture("weathervane-2025-11-19.yaml");
    let (r, rep) = parse_yaml(&text).unwrap();
    let raw: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    let mut n = 0;
    count_ids(&raw, &mut n);
    assert_eq!(r.tasks.len(), n);
    assert_eq!(r.tasks.len(), 190);
    assert_eq!(rep.sets, 5);
    assert!(r
        .tasks
        .iter()
        .any(|t| t.id == "FOUNDATION-FIX-NODE-ABI-001" && t.parent.is_none()));
    let dangling: Vec<_> = rep
        .dangling_dependencies
        .iter()
        .map(|d| (d.task_id.as_str(), d.dependency.as_str()))
        .collect();
    assert!(
        dangling.contains(&("AFP-W3-M1-EXIT-READINESS", "AFP-W3-RELIABILITY-DASHBOARD")),
        "{dangling:?}"
    );
}

#[test]
fn both_roadmaps_round_trip_through_export() {
    for name in ["weathervane-2025-10-14.yaml", "weathervane-2025-11-19.yaml"] {
        let (r, rep) = parse_yaml(&fixture(name)).unwrap();
        let (r2, rep2) = parse_yaml(&to_yaml(&r)).unwrap();
        assert_eq!(r, r2, "{name}");
        assert_eq!(rep, rep2, "{name}");
    }
}
