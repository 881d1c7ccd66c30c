//! Recommendations proven on days they were not fitted on: 14 days of the demo cluster with
//! the trend scenarios (regime changes, weekly seasonality, a weekly batch, start-up spikes
//! with in-series counter resets) and a 4-hour Prometheus outage, through a real
//! Prometheus into SQLite (and Postgres, which must agree), analyzed with `strategy = "auto"` and the last 3 days held out.
//! The held-out figures of the values in force are checked against a direct computation
//! from the generator's per-day samples.

mod support;

use std::time::Duration;

use rightsizer::analyzer::{BacktestSettings, PolicyOverride, PolicySet, StrategyName};
use rightsizer::collector::{self, CollectOptions};
use rightsizer::jobs;
use rightsizer::model::{Recommendation, Status};
use rightsizer::prometheus::{PromClient, PromConfig};
use rightsizer::store::{RecommendationFilter, Store};
use rightsizer_synth::{self as synth, GroundTruth, SynthConfig, TruthScenario};
use support::postgres::TestDatabase;
use support::prometheus::{Prometheus, TempDir};

/// 2024-03-09 15:00 UTC, as in `tests/scenarios.rs`.
const START: i64 = 1_709_996_400;
const DAYS: i64 = 14;
const HELD_OUT: u32 = 3;

/// `auto` everywhere but `trends/weekly` (pinned to guidance) and `trends/regime-up`
/// (pinned to time-aware: after an upward shift guidance's p95 already reads the new
/// level, so auto may rightly prefer it; pinning shows the detection works upwards too).
fn settings() -> jobs::AnalysisSettings {
    let mut global = PolicyOverride {
        strategy: Some(StrategyName::Auto),
        ..PolicyOverride::default()
    };
    for (workload, strategy) in [
        ("trends/Deployment/weekly", StrategyName::Guidance),
        ("trends/Deployment/regime-up", StrategyName::TimeAware),
    ] {
        global.workloads.insert(
            workload.into(),
            PolicyOverride {
                strategy: Some(strategy),
                ..PolicyOverride::default()
            },
        );
    }
    jobs::AnalysisSettings {
        policies: PolicySet::new(global).unwrap(),
        pricing: Default::default(),
        step_secs: 60,
        backtest: BacktestSettings {
            days: HELD_OUT,
            ..BacktestSettings::default()
        },
    }
}

async fn analyze(store: &dyn Store, truth: &GroundTruth) -> Vec<Recommendation> {
    jobs::analyze_cluster(store, "test", &settings(), truth.end + 600)
        .await
        .unwrap();
    store
        .recommendations(&RecommendationFilter {
            cluster: Some("test".into()),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// `rightsizer backtest --days 3 --namespace trends -o json` on cluster `test` of `db`, with
/// `extra` arguments (global ones are accepted after the subcommand too); its stdout.
async fn backtest_json(db: &str, extra: &[&str]) -> Vec<u8> {
    let args: Vec<String> = ["--database-url", db, "--cluster", "test", "backtest"]
        .into_iter()
        .chain(["--days", "3", "--namespace", "trends", "-o", "json"])
        .chain(extra.iter().copied())
        .map(String::from)
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rightsizer"))
            .args(&args)
            .env("RIGHTSIZER_LOG", "off")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Share of `values` above `t`, and how many lie within the sketch's bucket error of `t`
/// (those may land on either side).
fn above(values: &[f64], t: f64) -> (f64, f64) {
    let n = values.len() as f64;
    let over = values.iter().filter(|v| **v > t).count() as f64;
    let near = values
        .iter()
        .filter(|v| (**v - t).abs() <= 0.021 * t)
        .count() as f64;
    (over / n, near / n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trends_hold_out_of_sample_and_the_tournament_is_stable() {
    let dir = TempDir::new("rs-holdout").unwrap();
    let path = dir.path().join("metrics.om");
    let end = START + DAYS * 86_400;
    let cfg = SynthConfig {
        trends: true,
        daily_truth: true,
        outage: Some((end - 8 * 86_400, 4)),
        ..SynthConfig::new(42, START, end)
    };
    let (truth, prometheus) = tokio::task::spawn_blocking(move || {
        let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let truth = synth::generate(&cfg, file).unwrap();
        let prometheus = Prometheus::from_openmetrics(&path, cfg.end - cfg.start).unwrap();
        std::fs::remove_file(&path).unwrap();
        (truth, prometheus)
    })
    .await
    .unwrap();
    let prom = PromClient::new(&PromConfig {
        url: prometheus.url().into(),
        timeout: Duration::from_secs(120),
        ..PromConfig::default()
    })
    .unwrap();
    let store =
        rightsizer::store::connect(&format!("sqlite://{}", dir.path().join("rs.db").display()))
            .await
            .unwrap();
    let options = CollectOptions {
        step_secs: 60,
        chunk_hours: 6,
        concurrency: 2,
        ..CollectOptions::new("test", truth.start, truth.end)
    };
    collector::collect(&prom, store.as_ref(), &options)
        .await
        .unwrap();
    let pg = TestDatabase::create().await;
    let postgres = rightsizer::store::connect(pg.url()).await.unwrap();
    collector::collect(&prom, postgres.as_ref(), &options)
        .await
        .unwrap();
    drop(prometheus);

    let first = analyze(store.as_ref(), &truth).await;
    // The same history through a SQLite file and a Postgres server: the walk-forward and the
    // tournament agree.
    assert_eq!(
        analyze(postgres.as_ref(), &truth).await,
        first,
        "SQLite and Postgres differ"
    );
    drop(postgres);
    pg.drop_database().await;
    let trends: Vec<&Recommendation> = first
        .iter()
        .filter(|r| r.key.namespace == "trends")
        .collect();
    assert_eq!(
        trends.len(),
        5,
        "{:?}",
        trends.iter().map(|r| r.key.to_string()).collect::<Vec<_>>()
    );
    for r in &trends {
        let e = &r.evidence;
        eprintln!(
            "{} {} [{}] {:?} → {:?}\n  {}\n  {:?}",
            r.key,
            r.strategy,
            e.strategy_choice.as_deref().unwrap_or(""),
            r.current,
            r.recommended,
            r.reason,
            e.backtest.as_ref().and_then(|b| b.holdout.as_ref())
        );
        for s in &e.strategy_scores {
            eprintln!(
                "    {:11} met={} cost={:.2} {:?} {:?}",
                s.strategy, s.met_objective, s.idle_monthly_cost, s.holdout, s.misses
            );
        }
        assert_eq!(r.status, Status::Ok, "{}", r.key);
        assert_eq!(e.strategy_scores.len(), 5);
        // The safety objective on the held-out last 3 days.
        let b = e.backtest.as_ref().expect("backtest evidence");
        let h = b.holdout.as_ref().expect("held-out figures");
        assert_eq!(h.days, HELD_OUT, "{}", r.key);
        assert_eq!(h.memory_overrun_hours, 0, "{}: {h:?}", r.key);
        assert!(h.cpu_over_limit_share.unwrap() <= 0.005, "{}: {h:?}", r.key);

        // The values in force, replayed on the same days, equal a direct computation.
        let t = truth
            .container(
                &r.key.namespace,
                &r.key.kind,
                &r.key.workload,
                &r.key.container,
            )
            .unwrap();
        let days = &t.days[t.days.len() - HELD_OUT as usize..];
        let cpu: Vec<f64> = days
            .iter()
            .flat_map(|d| d.cpu_cores.iter().copied())
            .collect();
        let current = b.holdout_current.as_ref().expect("current values held out");
        let req = r.current.cpu_request_millicores.unwrap() as f64 / 1000.0;
        let (share, near) = above(&cpu, req);
        let got = current.cpu_over_request_share.unwrap();
        assert!(
            (got - share).abs() <= near + 1e-9,
            "{}: {got} vs {share} ± {near}",
            r.key
        );
        let slack = 1.0 - cpu.iter().sum::<f64>() / (cpu.len() as f64 * req);
        assert!(
            (current.cpu_slack.unwrap() - slack).abs() < 1e-6,
            "{}",
            r.key
        );
        let limit = r.current.memory_limit_bytes.unwrap() as f64;
        let overruns = days
            .iter()
            .flat_map(|d| d.memory_hour_peaks.iter())
            .filter(|(_, p)| *p > limit)
            .count() as u32;
        assert_eq!(current.memory_overrun_hours, overruns, "{}", r.key);
    }
    let by = |w: &str| *trends.iter().find(|r| r.key.workload == w).unwrap();

    // A pinned strategy wins over auto.
    let weekly = by("weekly");
    assert_eq!(weekly.strategy, "guidance");
    assert!(weekly
        .evidence
        .strategy_choice
        .as_deref()
        .unwrap()
        .starts_with("pinned"));

    // The regime changes are fitted on the history since the rollout, and say so.
    for (w, up) in [("regime-up", true), ("regime-down", false)] {
        let r = by(w);
        let t = truth.container("trends", "Deployment", w, w).unwrap();
        let Some(TruthScenario::RegimeChange { at, .. }) = t.scenario else {
            panic!("{w}: no regime change in the truth");
        };
        let from = r
            .evidence
            .fitted_from
            .unwrap_or_else(|| panic!("{w}: no fitted_from"));
        assert!(
            (from - at).abs() <= 3600,
            "{w}: fitted from {from}, change at {at}"
        );
        assert!(
            r.evidence.rules.iter().any(|x| x.contains("regime change")),
            "{w}"
        );
        // Fitted after the change, the CPU request moves with the new level.
        assert_eq!(r.strategy, "time-aware", "{w}");
        let cpu = r.recommended.cpu_request_millicores.unwrap() as f64;
        let old = r
            .evidence
            .strategy_scores
            .iter()
            .find(|s| s.strategy == "guidance")
            .unwrap();
        let guidance = old.recommended.cpu_request_millicores.unwrap() as f64;
        {
            assert!(
                if up { cpu >= guidance } else { cpu <= guidance },
                "{w}: {cpu} vs guidance {guidance}"
            );
        }
    }

    // The weekly batch is covered by the limit.
    let batch = by("weekly-batch");
    let t = truth
        .container("trends", "Deployment", "weekly-batch", "weekly-batch")
        .unwrap();
    let limit = batch.recommended.cpu_limit_millicores.unwrap() as f64 / 1000.0;
    assert!(
        limit >= t.cpu_max_cores * 0.98,
        "{limit} vs peak {}",
        t.cpu_max_cores
    );

    // The weekly batch is left to the limit, not paid for with the request all week.
    assert!(
        batch
            .findings
            .iter()
            .any(|f| f.code == "cpu-limit-above-ratio"),
        "{:?}",
        batch.findings
    );

    // `rightsizer backtest` prints the fleet's figures per strategy and stores nothing.
    let db = format!("sqlite://{}", dir.path().join("rs.db").display());
    let config = dir.path().join("rightsizer.toml");
    std::fs::write(&config, "[policy]\nstrategy = \"auto\"\n").unwrap();
    let config = config.to_str().unwrap().to_string();
    let out = backtest_json(&db, &["--config", &config]).await;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "current",
            "guidance",
            "decaying",
            "krr-simple",
            "vpa",
            "time-aware",
            "chosen"
        ]
    );
    for r in &rows {
        assert_eq!(r["containers"], 5, "{r}");
    }
    let chosen = rows.last().unwrap();
    assert_eq!(chosen["memory_overrun_hours"], 0, "{chosen}");
    assert_eq!(chosen["cpu_over_limit_misses"], 0, "{chosen}");
    // Grouped per workload: one group each, the same columns.
    let out = backtest_json(&db, &["--by", "workload"]).await;
    let groups: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap();
    assert_eq!(groups.len(), 5);
    assert_eq!(groups[0]["group"], "test/trends/Deployment/regime-down");
    assert_eq!(groups[0]["rows"][0]["containers"], 1);
    let after = store
        .recommendations(&RecommendationFilter {
            cluster: Some("test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(after, first, "backtest must not store anything");

    // Unchanged history: nobody flips strategy.
    let second = analyze(store.as_ref(), &truth).await;
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.key, b.key);
        assert_eq!(a.strategy, b.strategy, "{} flipped", a.key);
        assert_eq!(a.recommended, b.recommended, "{}", a.key);
    }
}
