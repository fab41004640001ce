//! The ledger on both engines (a real SQLite file, a real PostgreSQL
//! server): budgets checked and reserved in one
//! transaction (threads racing for the last dollars), orphaned attempts of a
//! dead runner, health updates, alerts once, cost summaries.

#[macro_use]
mod common;

use std::sync::Arc;

use common::Env;

use vane_core::dispatch::{BreakerPolicy, HealthState, Outcome, Usage};
use vane_core::planner::PlanQuery;
use vane_core::roadmap::parse_yaml;
use vane_core::{ErrorCode, Status};
use vane_store::*;

const ROADMAP: &str = r#"
epics:
  - id: E1
    title: Epic
    milestones:
      - id: M1
        title: M
        tasks:
          - {id: A, title: first}
          - {id: B, title: second}
"#;

both_engines!(
    a_running_attempt_reserves_its_ceiling_and_a_finished_one_counts_its_cost,
    racing_runners_never_reserve_more_than_the_budget,
    a_dead_runners_attempts_are_interrupted_and_its_claims_freed,
    health_alerts_and_the_cost_summary,
);

fn setup(env: &Env) -> Store {
    let store = env.open();
    let (r, _) = parse_yaml(ROADMAP).unwrap();
    store.import_roadmap(&r, false, "test").unwrap();
    store
}

fn attempt(task: &str, provider: &str, ceiling: i64, budgets: Vec<BudgetCheck>) -> NewAttempt {
    NewAttempt {
        task_id: task.into(),
        runner: "host:1:0".into(),
        runner_pid: 1,
        env: "dev".into(),
        provider: provider.into(),
        model: Some("m".into()),
        started_at_ms: 1_000,
        ceiling_micros: ceiling,
        budgets,
    }
}

fn day(limit: i64) -> BudgetCheck {
    BudgetCheck {
        scope: "total".into(),
        window: "day".into(),
        window_start_ms: 0,
        limit_micros: limit,
    }
}

fn finish(
    store: &Store,
    id: i64,
    outcome: Outcome,
    estimate: i64,
    reported: Option<i64>,
) -> Attempt {
    store
        .attempt_finish(&AttemptEnd {
            id,
            outcome: Some(outcome),
            finished_at_ms: 2_000,
            usage: Usage {
                input_tokens: 100,
                cached_input_tokens: 10,
                cache_write_tokens: 0,
                output_tokens: 5,
            },
            estimate_micros: estimate,
            reported_micros: reported,
            priced: true,
            detail: serde_json::json!({}),
            ..Default::default()
        })
        .unwrap()
}

fn a_running_attempt_reserves_its_ceiling_and_a_finished_one_counts_its_cost(env: Env) {
    let store = setup(&env);
    let a = store
        .attempt_start(&attempt("A", "p", 600, vec![day(1_000)]))
        .unwrap();
    // 600 reserved: a second attempt with ceiling 600 does not fit in 1000
    let e = store
        .attempt_start(&attempt("B", "p", 600, vec![day(1_000)]))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BudgetExceeded);
    assert_eq!(e.details["reserved_micros"], 600);
    // finished at 150 (the provider's figure beats the estimate of 200)
    let done = finish(&store, a, Outcome::Succeeded, 200, Some(150));
    assert_eq!(
        (done.cost_micros, done.estimate_micros, done.reported_micros),
        (150, 200, Some(150))
    );
    assert_eq!(
        store.spent("dev", None, 0).unwrap(),
        Spent {
            spent_micros: 150,
            reserved_micros: 0
        }
    );
    store
        .attempt_start(&attempt("B", "p", 600, vec![day(1_000)]))
        .unwrap();
    // a per-provider limit counts only that provider
    let per_q = BudgetCheck {
        scope: "q".into(),
        ..day(100)
    };
    store
        .attempt_start(&attempt("B", "q", 100, vec![per_q.clone()]))
        .unwrap();
    assert!(store
        .attempt_start(&attempt("B", "q", 1, vec![per_q]))
        .is_err());
}

fn racing_runners_never_reserve_more_than_the_budget(env: Env) {
    let store = setup(&env);
    let store = Arc::new(store);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let s = store.clone();
            std::thread::spawn(move || {
                s.attempt_start(&attempt("A", "p", 300, vec![day(1_000)]))
                    .is_ok()
            })
        })
        .collect();
    let started = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(started, 3, "3 × 300 fit in 1000, a fourth does not");
    assert_eq!(store.spent("dev", None, 0).unwrap().reserved_micros, 900);
}

fn a_dead_runners_attempts_are_interrupted_and_its_claims_freed(env: Env) {
    let store = setup(&env);
    let q = PlanQuery::default();
    let (task, _) = store
        .claim_next(&q, "host:1:0", 3600, 1_000)
        .unwrap()
        .unwrap();
    let id = store
        .attempt_start(&attempt(&task.id, "p", 10, vec![]))
        .unwrap();
    // alive: nothing happens
    assert!(store
        .interrupt_orphans(&|_, _| true, 5_000)
        .unwrap()
        .is_empty());
    let marked = store.interrupt_orphans(&|_, _| false, 5_000).unwrap();
    assert_eq!(marked.len(), 1);
    assert_eq!(marked[0].outcome, Outcome::Interrupted);
    // the task can be claimed again at once (its lease ended)
    let (again, prev) = store
        .claim_next(&q, "host:2:0", 3600, 5_001)
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.id.as_str(), prev),
        (task.id.as_str(), Status::InProgress)
    );
    // the killed runner's late report still records its cost, not its outcome
    let late = finish(&store, id, Outcome::Succeeded, 7, None);
    assert_eq!((late.outcome, late.cost_micros), (Outcome::Interrupted, 7));
    assert!(
        store
            .interrupt_orphans(&|_, _| false, 6_000)
            .unwrap()
            .is_empty(),
        "once"
    );
}

fn health_alerts_and_the_cost_summary(env: Env) {
    let store = setup(&env);
    let p = BreakerPolicy::default();
    let h = store
        .update_provider_health("claude", 10, |h| {
            h.after(Outcome::Auth, Some("not logged in"), None, 10, &p)
        })
        .unwrap();
    assert_eq!(h.state, HealthState::Disabled);
    let all = store.provider_health().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].last_error.as_deref(), Some("not logged in"));

    let alert = BudgetAlert {
        env: "dev".into(),
        scope: "total".into(),
        window: "day".into(),
        window_start_ms: 0,
        level: "warning".into(),
        at_ms: 5,
        spent_micros: 80,
        limit_micros: 100,
    };
    assert!(store.alert_once(&alert).unwrap());
    assert!(
        !store
            .alert_once(&BudgetAlert {
                at_ms: 6,
                ..alert.clone()
            })
            .unwrap(),
        "once per window and level"
    );
    assert!(store
        .alert_once(&BudgetAlert {
            level: "critical".into(),
            ..alert.clone()
        })
        .unwrap());
    assert_eq!(store.budget_alerts(0).unwrap().len(), 2);

    for (task, provider, cost) in [("A", "p", 10), ("A", "q", 20), ("B", "q", 30)] {
        let id = store
            .attempt_start(&attempt(task, provider, 100, vec![]))
            .unwrap();
        finish(&store, id, Outcome::Succeeded, cost, None);
    }
    let by_provider = store
        .cost_summary(Some("dev"), None, CostBy::Provider)
        .unwrap();
    assert_eq!(by_provider.len(), 2);
    assert_eq!(
        (
            by_provider[0].key.as_str(),
            by_provider[0].cost_micros,
            by_provider[0].attempts
        ),
        ("q", 50, 2)
    );
    assert_eq!(by_provider[0].input_tokens, 200);
    let by_task = store.cost_summary(None, None, CostBy::Task).unwrap();
    assert_eq!(by_task.iter().map(|r| r.cost_micros).sum::<i64>(), 60);
    let by_day = store.cost_summary(None, None, CostBy::Day).unwrap();
    assert_eq!(by_day[0].key, "1970-01-01");
    assert!(store
        .cost_summary(Some("prod"), None, CostBy::Provider)
        .unwrap()
        .is_empty());
    assert!(store
        .cost_summary(None, Some(10_000), CostBy::Provider)
        .unwrap()
        .is_empty());
}
