use super::*;
use crate::model::{ContainerKey, Resource, SignalHour, UsageHour};
use crate::sketch::Sketch;

/// 2024-03-11 00:00 UTC, a Monday.
const MONDAY: i64 = 1_710_115_200;

fn key() -> ContainerKey {
    ContainerKey {
        cluster: "c".into(),
        namespace: "n".into(),
        kind: "Deployment".into(),
        workload: "w".into(),
        container: "c".into(),
    }
}

/// `days` days of hours from `start`, CPU and memory per hour from `f(hour_start)`
/// (60 samples an hour spread ±10% around the level).
fn usage(start: i64, days: i64, f: impl Fn(i64) -> (f64, f64)) -> Vec<UsageHour> {
    let mut out = Vec::new();
    for h in 0..days * 24 {
        let t = start + h * 3600;
        let (cpu, mem) = f(t);
        let (mut c, mut m) = (Sketch::new(), Sketch::new());
        for i in 0..60 {
            let wobble = 0.9 + 0.2 * i as f64 / 59.0;
            c.insert(cpu * wobble).unwrap();
            m.insert(mem * wobble).unwrap();
        }
        out.push(UsageHour {
            key: key().into(),
            resource: Resource::Cpu,
            hour_start: t,
            sketch: c,
        });
        out.push(UsageHour {
            key: key().into(),
            resource: Resource::Memory,
            hour_start: t,
            sketch: m,
        });
    }
    out
}

fn fit_all(s: &dyn Strategy, u: &[UsageHour], signals: &[SignalHour], days: i64) -> Fit {
    let h = History::build(u, signals, MONDAY, MONDAY + days * DAY);
    let n = h.blocks.len();
    s.fits(&h, &[n], &Policy::default())
        .pop()
        .flatten()
        .unwrap()
}

#[test]
fn decaying_follows_recent_hours_and_never_decays_the_peak() {
    // 13 days at 1 core (and a 900 MB memory peak), then one day at 0.2 cores.
    let u = usage(MONDAY, 14, |t| {
        if t >= MONDAY + 13 * DAY {
            (0.2, 1e8)
        } else {
            (1.0, 9e8)
        }
    });
    let flat = fit_all(&Guidance, &u, &[], 14);
    let decaying = Decaying {
        half_life: Duration::from_secs(2 * 3600),
    };
    let recent = fit_all(&decaying, &u, &[], 14);
    // p95 of 0.9 .. 1.1 cores, then of 0.18 .. 0.22 once the old days have decayed away.
    assert!((flat.cpu.value - 1090.0).abs() < 15.0, "{}", flat.cpu.value);
    assert!(
        (recent.cpu.value - 218.0).abs() < 5.0,
        "{}",
        recent.cpu.value
    );
    assert!((recent.memory.value - 9.9e8).abs() < 1.0);
}

#[test]
fn prefix_fits_equal_fits_on_shorter_histories() {
    let u = usage(MONDAY, 10, |t| {
        (0.1 + ((t / 3600) % 24) as f64 / 100.0, 1e8 + t as f64 % 7e6)
    });
    let h = History::build(&u, &[], MONDAY, MONDAY + 10 * DAY);
    for s in [
        &Guidance as &dyn Strategy,
        &KrrSimple,
        &Vpa,
        &TimeAware,
        &Decaying {
            half_life: Duration::from_secs(24 * 3600),
        },
    ] {
        let fits = s.fits(&h, &[8, 10], &Policy::default());
        // Fitting on blocks [0, 8) of a 10-day history = fitting an 8-day history.
        let short = History::build(&u, &[], MONDAY, MONDAY + 8 * DAY);
        let alone = s.fits(&short, &[8], &Policy::default());
        assert_eq!(fits[0], alone[0], "{}", s.name());
        assert!(fits[1].is_some());
    }
}

#[test]
fn krr_and_vpa_emulations_follow_their_rules() {
    let u = usage(MONDAY, 8, |_| (0.5, 2e8));
    let krr = fit_all(&KrrSimple, &u, &[], 8);
    assert_eq!((krr.cpu.margin, krr.memory.margin), (0.0, 0.15));
    assert!((krr.cpu.value - 545.0).abs() < 10.0, "{}", krr.cpu.value);
    assert!((krr.memory.value - 2.2e8).abs() < 1.0);
    let vpa = fit_all(&Vpa, &u, &[], 8);
    assert_eq!(vpa.floors, Some((25, 250 << 20)));
    assert_eq!(vpa.percentile, 90.0);
    // p90 of 0.45..0.55 cores lands in a 5% bucket ending a little above it.
    assert!(
        vpa.cpu.value > 535.0 && vpa.cpu.value < 575.0,
        "{}",
        vpa.cpu.value
    );
    // Near 200 MB the VPA's buckets (10 MB first, growing 5%) are about 10% wide.
    assert!(
        vpa.memory.value >= 2.2e8 && vpa.memory.value < 2.2e8 * 1.11,
        "{}",
        vpa.memory.value
    );
    // The bucket end is never below the value, and within 5% plus the first bucket of it.
    for v in [0.001, 0.01, 0.3, 1.0, 7.5] {
        let end = vpa_bucket_end(v, 0.01);
        assert!(end > v && end <= v * 1.05 + 0.0101, "{v} → {end}");
    }
}

#[test]
fn a_lasting_level_shift_is_fitted_from_its_start_and_a_weekend_is_not_one() {
    // 9 days at 0.2 cores / 100 MB, then 3 days at 0.5 cores / 160 MB.
    let change = MONDAY + 9 * DAY;
    let u = usage(MONDAY, 12, |t| {
        if t >= change {
            (0.5, 1.6e8)
        } else {
            (0.2, 1e8)
        }
    });
    let f = fit_all(&TimeAware, &u, &[], 12);
    assert_eq!(f.fitted_from, Some(change));
    assert!(f.notes[0].contains("regime change"), "{:?}", f.notes);
    assert!((f.cpu.value - 545.0).abs() < 10.0, "{}", f.cpu.value);
    let guidance = fit_all(&Guidance, &u, &[], 12);
    assert!(guidance.cpu.value > f.cpu.value * 0.9 && guidance.fitted_from.is_none());
    // Busy weekdays with a daily cycle, quiet weekends: no regime; the request reads the
    // busiest weekday, above the whole window's p95 (which quiet days pull down).
    let level = |t: i64| {
        if weekday(t) >= 5 {
            0.02
        } else {
            0.1 + 0.2 * ((t / 3600) % 24) as f64 / 23.0
        }
    };
    let weekly = usage(MONDAY, 12, |t| (level(t), 1e8));
    let w = fit_all(&TimeAware, &weekly, &[], 12);
    assert_eq!(w.fitted_from, None);
    assert!(
        w.cpu.label.contains("busiest days of the week"),
        "{}",
        w.cpu.label
    );
    let flat = fit_all(&Guidance, &weekly, &[], 12);
    assert!(
        w.cpu.value > flat.cpu.value,
        "{} vs {}",
        w.cpu.value,
        flat.cpu.value
    );
    assert!(regime_start(&[Some(1.0); 6]).is_none());
}

#[test]
fn start_up_hours_stay_out_of_the_request_and_under_the_limit() {
    // Steady 0.1 cores; a restart every day at 06:00 with 1 core for that hour.
    let u = usage(MONDAY, 8, |t| {
        if (t / 3600) % 24 == 6 {
            (1.0, 1e8)
        } else {
            (0.1, 1e8)
        }
    });
    let signals: Vec<SignalHour> = (0..8)
        .map(|d| SignalHour {
            key: key(),
            hour_start: MONDAY + d * DAY + 6 * 3600,
            restarts: 1,
            oom_kills: 0,
            cfs_periods: 0.0,
            cfs_throttled_periods: 0.0,
        })
        .collect();
    let f = fit_all(&TimeAware, &u, &signals, 8);
    assert!(f.cpu.value < 115.0, "{}", f.cpu.value);
    let (floor, why) = f.cpu_limit_floor.unwrap();
    assert!((floor - 1265.0).abs() < 20.0, "{floor}");
    assert!(why.contains("highest CPU"), "{why}");
}
