//! Import and export of the upstream roadmap format (YAML):
//! `epics → milestones → (tasks | sets → tasks)`, epic-level tasks and
//! top-level `tasks`. Every field vane does not model is kept in `extra`, so an
//! import followed by an export loses nothing. The import also reports
//! dangling dependencies and dependency cycles, with ids.

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::{ErrorCode, VaneError};
use crate::model::{ExitCriterion, Group, GroupKind, Priority, Roadmap, Status, Task};

/// What an import found besides the tasks themselves.
#[derive(Debug, Clone, Default, Serialize, PartialEq, JsonSchema)]
pub struct ImportReport {
    pub epics: usize,
    pub milestones: usize,
    pub sets: usize,
    pub tasks: usize,
    pub by_status: IndexMap<String, usize>,
    /// `(task, missing dependency)`
    pub dangling_dependencies: Vec<DanglingDependency>,
    /// each cycle as the ids on it
    pub cycles: Vec<Vec<String>>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, JsonSchema)]
pub struct DanglingDependency {
    pub task_id: String,
    pub dependency: String,
}

const TASK_KEYS: [&str; 9] = [
    "id",
    "title",
    "description",
    "status",
    "priority",
    "owner",
    "estimate_hours",
    "dependencies",
    "exit_criteria",
];

fn roadmap_error(msg: impl Into<String>, details: Value) -> VaneError {
    VaneError::new(ErrorCode::RoadmapInvalid, msg).with_details(details)
}

/// Parses roadmap YAML text into a [`Roadmap`] and its [`ImportReport`].
pub fn parse_yaml(text: &str) -> Result<(Roadmap, ImportReport), VaneError> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let loc = e
            .location()
            .map(|l| json!({"line": l.line(), "column": l.column()}));
        roadmap_error(
            format!("roadmap is not valid YAML: {e}"),
            json!({ "location": loc }),
        )
    })?;
    from_value(&value)
}

/// Builds a roadmap from an already parsed document (YAML or JSON).
pub fn from_value(value: &Value) -> Result<(Roadmap, ImportReport), VaneError> {
    let Value::Object(top) = value else {
        return Err(roadmap_error(
            "a roadmap must be a mapping with `epics` and/or `tasks`",
            json!({}),
        ));
    };
    let mut b = Builder::default();
    for (k, v) in top {
        match k.as_str() {
            "epics" => {
                for (i, e) in as_list(v, "epics")?.iter().enumerate() {
                    b.group(e, GroupKind::Epic, None, &format!("epics[{i}]"))?;
                }
            }
            "tasks" => {
                for (i, t) in as_list(v, "tasks")?.iter().enumerate() {
                    b.task(t, None, &format!("tasks[{i}]"))?;
                }
            }
            _ => {
                b.roadmap.extra.insert(k.clone(), v.clone());
            }
        }
    }
    if !top.contains_key("epics") && !top.contains_key("tasks") {
        return Err(roadmap_error(
            "a roadmap needs `epics` or `tasks`",
            json!({}),
        ));
    }
    let Builder {
        roadmap,
        mut report,
        ..
    } = b;
    report.tasks = roadmap.tasks.len();
    for g in &roadmap.groups {
        match g.kind {
            GroupKind::Epic => report.epics += 1,
            GroupKind::Milestone => report.milestones += 1,
            GroupKind::Set => report.sets += 1,
        }
    }
    for s in Status::ALL {
        let n = roadmap.tasks.iter().filter(|t| t.status == s).count();
        if n > 0 {
            report.by_status.insert(s.as_str().to_string(), n);
        }
    }
    let (dangling, cycles) = check_graph(&roadmap.tasks);
    report.dangling_dependencies = dangling;
    report.cycles = cycles;
    Ok((roadmap, report))
}

fn as_list<'a>(v: &'a Value, what: &str) -> Result<&'a Vec<Value>, VaneError> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Null => Ok(const { &Vec::new() }),
        _ => Err(roadmap_error(
            format!("`{what}` must be a list"),
            json!({ "field": what }),
        )),
    }
}

fn opt_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[derive(Default)]
struct Builder {
    roadmap: Roadmap,
    report: ImportReport,
    seen: HashMap<String, String>,
}

impl Builder {
    fn group(
        &mut self,
        v: &Value,
        kind: GroupKind,
        parent: Option<usize>,
        at: &str,
    ) -> Result<(), VaneError> {
        let Value::Object(m) = v else {
            return Err(roadmap_error(
                format!("{at}: a {} must be a mapping", kind.as_str()),
                json!({ "at": at }),
            ));
        };
        let id = match m.get("id") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(roadmap_error(
                    format!("{at}: {} without an `id`", kind.as_str()),
                    json!({ "at": at }),
                ))
            }
        };
        let idx = self.roadmap.groups.len();
        let mut extra = IndexMap::new();
        for (k, val) in m {
            if !matches!(
                k.as_str(),
                "id" | "title" | "description" | "status" | "milestones" | "tasks" | "sets"
            ) {
                extra.insert(k.clone(), val.clone());
            }
        }
        self.roadmap.groups.push(Group {
            kind,
            id: id.clone(),
            title: opt_string(m.get("title")),
            description: opt_string(m.get("description")),
            status: opt_string(m.get("status")),
            parent,
            extra,
        });
        // Children in the document's key order, so export keeps the layout.
        for (k, val) in m {
            match k.as_str() {
                "milestones" => {
                    for (i, c) in as_list(val, "milestones")?.iter().enumerate() {
                        self.group(
                            c,
                            GroupKind::Milestone,
                            Some(idx),
                            &format!("{at}.milestones[{i}] ({id})"),
                        )?;
                    }
                }
                "sets" => {
                    for (i, c) in as_list(val, "sets")?.iter().enumerate() {
                        self.group(
                            c,
                            GroupKind::Set,
                            Some(idx),
                            &format!("{at}.sets[{i}] ({id})"),
                        )?;
                    }
                }
                "tasks" => {
                    for (i, t) in as_list(val, "tasks")?.iter().enumerate() {
                        self.task(t, Some(idx), &format!("{at}.tasks[{i}] ({id})"))?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn task(&mut self, v: &Value, parent: Option<usize>, at: &str) -> Result<(), VaneError> {
        let Value::Object(m) = v else {
            return Err(roadmap_error(
                format!("{at}: a task must be a mapping"),
                json!({ "at": at }),
            ));
        };
        let id = match m.get("id") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(roadmap_error(
                    format!("{at}: task without an `id`"),
                    json!({ "at": at }),
                ))
            }
        };
        if let Some(prev) = self.seen.insert(id.clone(), at.to_string()) {
            return Err(roadmap_error(
                format!("duplicate task id `{id}` at {at} (first at {prev})"),
                json!({ "task_id": id, "first": prev, "second": at }),
            ));
        }
        let bad = |field: &str, why: String| {
            roadmap_error(
                format!("task `{id}` ({at}): {why}"),
                json!({ "task_id": id, "field": field }),
            )
        };
        let title = match m.get("title") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => {
                self.report
                    .warnings
                    .push(format!("task `{id}` has no title"));
                String::new()
            }
            Some(other) => other.to_string(),
        };
        let status = match m.get("status") {
            None | Some(Value::Null) => Status::Pending,
            Some(Value::String(s)) => Status::parse(s).ok_or_else(|| {
                bad("status", format!("unknown status `{s}` (allowed: pending, in_progress, blocked, review, done, cancelled)"))
            })?,
            Some(other) => return Err(bad("status", format!("status must be a string, got {other}"))),
        };
        let priority = match m.get("priority") {
            None | Some(Value::Null) => None,
            Some(p) => Some(
                Priority::from_value(p)
                    .ok_or_else(|| bad("priority", Priority::invalid(p).message))?,
            ),
        };
        let estimate_hours = match m.get("estimate_hours") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(other) => {
                return Err(bad(
                    "estimate_hours",
                    format!("estimate_hours must be a number, got {other}"),
                ))
            }
        };
        let dependencies = match m.get("dependencies") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|d| match d {
                    Value::String(s) => Ok(s.trim().to_string()),
                    Value::Number(n) => Ok(n.to_string()),
                    other => Err(bad(
                        "dependencies",
                        format!("a dependency must be a task id, got {other}"),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(Value::String(s)) => vec![s.trim().to_string()],
            Some(other) => {
                return Err(bad(
                    "dependencies",
                    format!("dependencies must be a list, got {other}"),
                ))
            }
        };
        let exit_criteria = match m.get("exit_criteria") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.iter().map(ExitCriterion::from_value).collect(),
            Some(other) => vec![ExitCriterion::from_value(other)],
        };
        let extra = m
            .iter()
            .filter(|(k, _)| !TASK_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.roadmap.tasks.push(Task {
            id,
            title,
            description: opt_string(m.get("description")),
            status,
            priority,
            owner: opt_string(m.get("owner")),
            estimate_hours,
            dependencies,
            exit_criteria,
            parent,
            extra,
        });
        Ok(())
    }
}

/// Dangling dependencies and dependency cycles (Tarjan's SCC, iterative).
pub fn check_graph(tasks: &[Task]) -> (Vec<DanglingDependency>, Vec<Vec<String>>) {
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut dangling = Vec::new();
    let mut adj: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
    for (i, t) in tasks.iter().enumerate() {
        for d in &t.dependencies {
            match index.get(d.as_str()) {
                Some(&j) => adj[i].push(j),
                None => dangling.push(DanglingDependency {
                    task_id: t.id.clone(),
                    dependency: d.clone(),
                }),
            }
        }
    }
    let cycles = strongly_connected_cycles(&adj)
        .into_iter()
        .map(|c| c.into_iter().map(|i| tasks[i].id.clone()).collect())
        .collect();
    (dangling, cycles)
}

/// Returns every strongly connected component that contains a cycle
/// (size > 1, or a self-loop), each in index order.
pub fn strongly_connected_cycles(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = adj.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0usize;
    let mut out = Vec::new();
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, next edge position)
        let mut call: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut ei)) = call.last_mut() {
            if *ei < adj[v].len() {
                let w = adj[v][*ei];
                *ei += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                call.pop();
                if let Some(&(u, _)) = call.last() {
                    low[u] = low[u].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    if comp.len() > 1 || adj[v].contains(&v) {
                        comp.sort_unstable();
                        out.push(comp);
                    }
                }
            }
        }
    }
    out
}

/// Serialises a task back to the upstream form (known keys first, then extra).
pub fn task_to_value(t: &Task) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(t.id.clone()));
    m.insert("title".into(), Value::String(t.title.clone()));
    if let Some(d) = &t.description {
        m.insert("description".into(), Value::String(d.clone()));
    }
    m.insert("status".into(), Value::String(t.status.as_str().into()));
    if let Some(p) = t.priority {
        m.insert("priority".into(), Value::String(p.as_str().into()));
    }
    if let Some(o) = &t.owner {
        m.insert("owner".into(), Value::String(o.clone()));
    }
    if let Some(h) = t.estimate_hours {
        m.insert("estimate_hours".into(), json!(h));
    }
    if !t.dependencies.is_empty() {
        m.insert("dependencies".into(), json!(t.dependencies));
    }
    if !t.exit_criteria.is_empty() {
        m.insert(
            "exit_criteria".into(),
            Value::Array(t.exit_criteria.iter().map(|e| e.to_value()).collect()),
        );
    }
    for (k, v) in &t.extra {
        m.insert(k.clone(), v.clone());
    }
    Value::Object(m)
}

/// The whole roadmap in the upstream layout.
pub fn to_value(r: &Roadmap) -> Value {
    let mut child_groups: Vec<Vec<usize>> = vec![Vec::new(); r.groups.len()];
    let mut child_tasks: Vec<Vec<usize>> = vec![Vec::new(); r.groups.len()];
    let mut top_groups = Vec::new();
    let mut top_tasks = Vec::new();
    for (i, g) in r.groups.iter().enumerate() {
        match g.parent {
            Some(p) if p < r.groups.len() => child_groups[p].push(i),
            _ => top_groups.push(i),
        }
    }
    for (i, t) in r.tasks.iter().enumerate() {
        match t.parent {
            Some(p) if p < r.groups.len() => child_tasks[p].push(i),
            _ => top_tasks.push(i),
        }
    }
    fn group_value(r: &Roadmap, gi: usize, cg: &[Vec<usize>], ct: &[Vec<usize>]) -> Value {
        let g = &r.groups[gi];
        let mut m = Map::new();
        m.insert("id".into(), Value::String(g.id.clone()));
        if let Some(t) = &g.title {
            m.insert("title".into(), Value::String(t.clone()));
        }
        if let Some(d) = &g.description {
            m.insert("description".into(), Value::String(d.clone()));
        }
        if let Some(s) = &g.status {
            m.insert("status".into(), Value::String(s.clone()));
        }
        for (k, v) in &g.extra {
            m.insert(k.clone(), v.clone());
        }
        // Children keep their document order: import walks keys in order, so
        // the smallest task index under each key tells which key came first.
        fn first_task(gi: usize, cg: &[Vec<usize>], ct: &[Vec<usize>]) -> usize {
            let own = ct[gi].first().copied().unwrap_or(usize::MAX);
            cg[gi]
                .iter()
                .map(|&c| first_task(c, cg, ct))
                .fold(own, usize::min)
        }
        let tasks: Vec<Value> = ct[gi]
            .iter()
            .map(|&ti| task_to_value(&r.tasks[ti]))
            .collect();
        let mut milestones = (Vec::new(), usize::MAX);
        let mut sets = (Vec::new(), usize::MAX);
        for &c in &cg[gi] {
            let v = group_value(r, c, cg, ct);
            let slot = if r.groups[c].kind == GroupKind::Set {
                &mut sets
            } else {
                &mut milestones
            };
            slot.0.push(v);
            slot.1 = slot.1.min(first_task(c, cg, ct));
        }
        let no_children = milestones.0.is_empty() && sets.0.is_empty() && tasks.is_empty();
        let mut slots = vec![
            ("milestones", milestones.1, milestones.0),
            (
                "tasks",
                ct[gi].first().copied().unwrap_or(usize::MAX),
                tasks,
            ),
            ("sets", sets.1, sets.0),
        ];
        slots.sort_by_key(|s| s.1);
        for (key, _, items) in slots {
            if !items.is_empty() || (no_children && key == "tasks") {
                m.insert(key.into(), Value::Array(items));
            }
        }
        Value::Object(m)
    }
    let mut top = Map::new();
    top.insert(
        "epics".into(),
        Value::Array(
            top_groups
                .iter()
                .map(|&g| group_value(r, g, &child_groups, &child_tasks))
                .collect(),
        ),
    );
    if !top_tasks.is_empty() {
        top.insert(
            "tasks".into(),
            Value::Array(
                top_tasks
                    .iter()
                    .map(|&t| task_to_value(&r.tasks[t]))
                    .collect(),
            ),
        );
    }
    for (k, v) in &r.extra {
        top.insert(k.clone(), v.clone());
    }
    Value::Object(top)
}

/// The roadmap as upstream-format YAML text.
pub fn to_yaml(r: &Roadmap) -> String {
    serde_yaml_ng::to_string(&to_value(r)).unwrap_or_else(|e| format!("# export failed: {e}\n"))
}

/// Ids that appear more than once (used when merging roadmaps).
pub fn duplicate_ids(tasks: &[Task]) -> Vec<String> {
    let mut seen = HashSet::new();
    tasks
        .iter()
        .filter(|t| !seen.insert(t.id.as_str()))
        .map(|t| t.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
epics:
  - id: E1
    title: Epic
    domain: product
    milestones:
      - id: M1
        title: M
        tasks:
          - id: T1
            title: first
            status: done
            exit_criteria:
              - critic: build
              - doc: docs/x.md
              - tests: tests/a.py
              - free text
          - id: T2
            title: second
            dependencies: [T1, GHOST]
            priority: high
            custom: {a: 1}
        sets:
          - id: S1
            title: a set
            tasks:
              - id: T3
                title: in set
                dependencies: [T4]
tasks:
  - id: T4
    title: top
    dependencies: [T3]
    epic: OTHER
"#;

    #[test]
    fn imports_nested_sets_top_level_and_reports_graph_problems() {
        let (r, rep) = parse_yaml(SAMPLE).unwrap();
        assert_eq!(r.tasks.len(), 4);
        assert_eq!((rep.epics, rep.milestones, rep.sets), (1, 1, 1));
        assert_eq!(
            rep.dangling_dependencies,
            vec![DanglingDependency {
                task_id: "T2".into(),
                dependency: "GHOST".into()
            }]
        );
        assert_eq!(rep.cycles, vec![vec!["T3".to_string(), "T4".to_string()]]);
        let t1 = &r.tasks[0];
        assert_eq!(t1.exit_criteria.len(), 4);
        assert!(matches!(&t1.exit_criteria[2], ExitCriterion::Other(m) if m.contains_key("tests")));
        assert_eq!(r.tasks[1].priority, Some(Priority::HIGH));
        assert_eq!(r.tasks[1].extra.get("custom"), Some(&json!({"a": 1})));
        assert_eq!(
            r.lineage(&r.tasks[2]),
            (Some("E1".into()), Some("M1".into()))
        );
        assert_eq!(r.lineage(&r.tasks[3]), (Some("OTHER".into()), None));
    }

    #[test]
    fn export_round_trips_every_field() {
        let (r, _) = parse_yaml(SAMPLE).unwrap();
        let text = to_yaml(&r);
        let (r2, _) = parse_yaml(&text).unwrap();
        assert_eq!(r, r2);
    }

    #[test]
    fn rejects_bad_input_with_typed_errors() {
        for (text, needle) in [
            ("- a\n- b\n", "mapping"),
            ("epics: 3\n", "must be a list"),
            ("tasks:\n  - title: no id\n", "without an `id`"),
            ("tasks:\n  - id: A\n  - id: A\n", "duplicate task id"),
            (
                "tasks:\n  - id: A\n    status: sleeping\n",
                "unknown status",
            ),
            (
                "tasks:\n  - id: A\n    priority: whenever\n",
                "invalid priority",
            ),
            (
                "tasks:\n  - id: A\n    estimate_hours: lots\n",
                "estimate_hours",
            ),
            ("epics: [\n", "not valid YAML"),
        ] {
            let err = parse_yaml(text).unwrap_err();
            assert_eq!(err.code, ErrorCode::RoadmapInvalid, "{text}");
            assert!(err.message.contains(needle), "{text}: {}", err.message);
        }
    }
}
