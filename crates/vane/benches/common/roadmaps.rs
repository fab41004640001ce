//! Roadmaps the benchmarks share.

/// `n` tasks as chains of 100 (each task waits on the one before it), ten
/// chains per epic, priorities rotating; every 7th chain's first task done.
pub fn big_roadmap(n: usize) -> String {
    let mut s = String::from("epics:\n");
    let chains = n / 100;
    for e in 0..(chains / 10).max(1) {
        s.push_str(&format!(
            "  - id: E{e}\n    title: epic {e}\n    milestones:\n"
        ));
        for m in 0..10 {
            let chain = e * 10 + m;
            if chain >= chains {
                break;
            }
            s.push_str(&format!(
                "      - id: E{e}.M{m}\n        title: chain {chain}\n        tasks:\n"
            ));
            for k in 0..100 {
                let id = format!("T{chain}-{k}");
                let prio = ["critical", "high", "medium", "low"][(chain + k) % 4];
                s.push_str(&format!("          - id: {id}\n            title: task {id}\n            priority: {prio}\n"));
                if k > 0 {
                    s.push_str(&format!("            dependencies: [T{chain}-{}]\n", k - 1));
                }
                if k == 0 && chain % 7 == 0 {
                    s.push_str("            status: done\n");
                }
            }
        }
    }
    s
}
