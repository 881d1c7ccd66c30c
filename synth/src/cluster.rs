//! The demo cluster: workload definitions and their expansion into nodes,
//! pods, container instances and owner objects over the history.
//!
//! Everything here is decided up front from the seed (ChaCha8Rng), so the
//! metric passes only have to look things up.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::usage::{self, Profile};
use super::{SynthConfig, TruthEvent, TruthEventKind, TruthScenario};

const MI: i64 = 1 << 20;
const GI: i64 = 1 << 30;

/// Nodes per copy of the workload set.
const NODES_PER_COPY: usize = 3;
/// Only a share of nodes drops the odd scrape, so some series are gap-free.
const MISSED_SCRAPE_PROB: f64 = 0.002;
const CRON_PERIOD_SECS: i64 = 6 * 3600;
const WEEK_SECS: i64 = 7 * 86_400;
/// Kubernetes' default `successfulJobsHistoryLimit`.
const JOB_HISTORY_LIMIT: usize = 3;

/// How a pod is owned, as kube-state-metrics reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    CronJob,
    Pod,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::CronJob => "CronJob",
            Kind::Pod => "Pod",
        }
    }
}

/// Requests and limits of one container spec; `None` means unset.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Resources {
    pub cpu_request_millicores: Option<i64>,
    pub cpu_limit_millicores: Option<i64>,
    pub memory_request_bytes: Option<i64>,
    pub memory_limit_bytes: Option<i64>,
}

impl Resources {
    const fn new(cpu_req_m: i64, mem_req: i64, cpu_lim_m: i64, mem_lim: i64) -> Self {
        Resources {
            cpu_request_millicores: Some(cpu_req_m),
            cpu_limit_millicores: Some(cpu_lim_m),
            memory_request_bytes: Some(mem_req),
            memory_limit_bytes: Some(mem_lim),
        }
    }

    const fn requests_only(cpu_req_m: i64, mem_req: i64) -> Self {
        Resources {
            cpu_request_millicores: Some(cpu_req_m),
            cpu_limit_millicores: None,
            memory_request_bytes: Some(mem_req),
            memory_limit_bytes: None,
        }
    }

    const NONE: Resources = Resources {
        cpu_request_millicores: None,
        cpu_limit_millicores: None,
        memory_request_bytes: None,
        memory_limit_bytes: None,
    };

    pub(crate) fn cpu_limit_cores(&self) -> Option<f64> {
        self.cpu_limit_millicores.map(|m| m as f64 / 1000.0)
    }

    fn is_empty(&self) -> bool {
        self.cpu_request_millicores.is_none()
            && self.cpu_limit_millicores.is_none()
            && self.memory_request_bytes.is_none()
            && self.memory_limit_bytes.is_none()
    }

    fn is_guaranteed(&self) -> bool {
        self.cpu_limit_millicores.is_some()
            && self.memory_limit_bytes.is_some()
            && self.cpu_request_millicores == self.cpu_limit_millicores
            && self.memory_request_bytes == self.memory_limit_bytes
    }
}

struct ContainerDef {
    name: &'static str,
    image: &'static str,
    res: Resources,
    profile: Profile,
    /// (replica index, position in the history as a fraction) of each restart.
    restarts: &'static [(usize, f64)],
    /// Every replica restarts once a day, the last time this many seconds
    /// before the (hour-aligned) end of the history.
    daily_restart_secs_before_end: Option<i64>,
    restart_reason: &'static str,
    pattern: Pattern,
}

/// A planted usage pattern on top of the profile, for walk-forward tests.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pattern {
    /// The profile alone.
    Plain,
    /// Busy Monday to Friday (UTC), quiet on Saturday and Sunday: demand
    /// times these on the weekend.
    Weekly {
        weekend_cpu: f64,
        weekend_memory: f64,
    },
    /// A run of `hours` hours once a week, the last one starting
    /// `last_start_hours_before_end` hours before the hour-aligned end.
    WeeklyBatch {
        last_start_hours_before_end: i64,
        hours: i64,
        cpu: f64,
        memory: f64,
    },
    /// Every container started inside the history burns `cpu` times its
    /// usual CPU for its first `spike_secs` (warm-up, JIT, cache fill).
    StartupSpike { spike_secs: i64, cpu: f64 },
}

/// Where a rollout falls in the history.
#[derive(Clone, Copy, Debug)]
enum RolloutAt {
    /// A fraction of the history.
    Fraction(f64),
    /// Hours before the hour-aligned end: the same moment of the recent
    /// past whatever the history's length.
    HoursBeforeEnd(i64),
}

struct RolloutDef {
    /// Where the new ReplicaSet appears.
    at: RolloutAt,
    containers: &'static [ContainerDef],
    /// New code, new appetite: CPU demand of the new pods relative to the old.
    cpu_factor: f64,
    /// Working set of the new pods relative to the old.
    memory_factor: f64,
}

/// A HorizontalPodAutoscaler on CPU utilization. Its replica count follows
/// the daily load between min and max (see [`usage::hpa_replicas`]).
pub(crate) struct HpaDef {
    pub name: &'static str,
    pub min_replicas: usize,
    pub max_replicas: usize,
    /// Target average CPU utilization, in percent of the request.
    pub cpu_target_utilization: f64,
}

/// A PodDisruptionBudget over all pods of its workload.
pub(crate) struct PdbDef {
    pub name: &'static str,
    pub disruptions_allowed: i64,
}

struct WorkloadDef {
    namespace: &'static str,
    kind: Kind,
    name: &'static str,
    /// Fixed replica count; for a Deployment with an HPA, see `hpa`.
    replicas: usize,
    containers: &'static [ContainerDef],
    rollout: Option<RolloutDef>,
    /// Mimic an operator dropping cAdvisor's `id`/`name` labels: a restart
    /// then resets the counter inside one series instead of starting a new one.
    drop_id_labels: bool,
    /// Deployments only: scaled by this HPA instead of a fixed count.
    hpa: Option<HpaDef>,
    /// Deployments and StatefulSets only.
    pdb: Option<PdbDef>,
    /// Deployments only: created this many hours before the end of the
    /// history (`None`: it was already running when the history starts).
    age_hours: Option<i64>,
}

const fn c(
    name: &'static str,
    image: &'static str,
    res: Resources,
    profile: Profile,
) -> ContainerDef {
    ContainerDef {
        name,
        image,
        res,
        profile,
        restarts: &[],
        daily_restart_secs_before_end: None,
        restart_reason: "",
        pattern: Pattern::Plain,
    }
}

const API_PROFILE: Profile = Profile {
    cpu_diurnal: 0.5,
    cpu_burst_prob: 0.02,
    cpu_burst_factor: 2.5,
    mem_spike_prob: 0.01,
    mem_spike_bytes: 120.0 * MI as f64,
    ..Profile::steady(0.32, 380.0 * MI as f64)
};

const CART_PROFILE: Profile = Profile {
    cpu_diurnal: 0.4,
    cpu_noise: 0.3,
    cpu_burst_prob: 0.05,
    cpu_burst_factor: 1.8,
    ..Profile::steady(0.19, 190.0 * MI as f64)
};

const ETL_PROFILE: Profile = Profile {
    cpu_diurnal: 0.2,
    cpu_noise: 0.4,
    mem_noise_bytes: 20.0 * MI as f64,
    mem_creep_bytes_per_hour: 6.0 * MI as f64,
    mem_spike_prob: 0.03,
    mem_spike_bytes: 300.0 * MI as f64,
    ..Profile::steady(0.6, 600.0 * MI as f64)
};

const POSTGRES_PROFILE: Profile = Profile {
    cpu_diurnal: 0.35,
    mem_spike_prob: 0.02,
    mem_spike_bytes: 300.0 * MI as f64,
    ..Profile::steady(0.25, 1100.0 * MI as f64)
};

const REPORT_PROFILE: Profile = Profile {
    cpu_diurnal: 0.0,
    cpu_noise: 0.2,
    cpu_burst_prob: 0.0,
    mem_ramp_bytes: 1000.0 * MI as f64,
    ..Profile::steady(1.3, 300.0 * MI as f64)
};

const TINY_PROFILE: Profile = Profile {
    cpu_diurnal: 0.1,
    ..Profile::steady(0.002, 20.0 * MI as f64)
};

/// Per pod: the HPA evens the load out, so little daily cycle is left.
const FRONTEND_PROFILE: Profile = Profile {
    cpu_diurnal: 0.1,
    ..Profile::steady(0.2, 210.0 * MI as f64)
};

const IDLE_PROFILE: Profile = Profile {
    cpu_diurnal: 0.2,
    ..Profile::steady(0.0008, 10.0 * MI as f64)
};

const WORKLOADS: &[WorkloadDef] = &[
    WorkloadDef {
        namespace: "shop",
        kind: Kind::Deployment,
        name: "api",
        replicas: 3,
        containers: &[c(
            "api",
            "registry.example.com/shop/api:1.8.2",
            Resources::new(500, 512 * MI, 2000, GI),
            API_PROFILE,
        )],
        rollout: Some(RolloutDef {
            at: RolloutAt::Fraction(0.45),
            containers: &[c(
                "api",
                "registry.example.com/shop/api:1.9.0",
                Resources::new(500, 768 * MI, 2000, GI),
                API_PROFILE,
            )],
            cpu_factor: 1.15,
            memory_factor: 1.0,
        }),
        drop_id_labels: false,
        hpa: None,
        // maxUnavailable: 0: no voluntary disruption is ever allowed.
        pdb: Some(PdbDef {
            name: "api",
            disruptions_allowed: 0,
        }),
        age_hours: None,
    },
    WorkloadDef {
        namespace: "shop",
        kind: Kind::Deployment,
        name: "web",
        replicas: 2,
        containers: &[
            c(
                "web",
                "docker.io/library/nginx:1.25.4",
                Resources::new(250, 256 * MI, 1000, 512 * MI),
                Profile::steady(0.12, 90.0 * MI as f64),
            ),
            c(
                "istio-proxy",
                "docker.io/istio/proxyv2:1.20.3",
                Resources::new(100, 128 * MI, 500, 256 * MI),
                Profile::steady(0.04, 60.0 * MI as f64),
            ),
        ],
        rollout: None,
        drop_id_labels: false,
        hpa: None,
        pdb: None,
        age_hours: None,
    },
    // Over-provisioned: requests far above what it uses.
    WorkloadDef {
        namespace: "shop",
        kind: Kind::Deployment,
        name: "checkout",
        replicas: 2,
        containers: &[c(
            "checkout",
            "registry.example.com/shop/checkout:3.2.0",
            Resources::new(2000, 2 * GI, 4000, 2 * GI),
            Profile::steady(0.035, 150.0 * MI as f64),
        )],
        rollout: None,
        drop_id_labels: false,
        hpa: None,
        pdb: None,
        age_hours: None,
    },
    // Under-provisioned: throttled at its CPU limit and OOMKilled at its
    // memory limit.
    WorkloadDef {
        namespace: "shop",
        kind: Kind::Deployment,
        name: "cart",
        replicas: 2,
        containers: &[ContainerDef {
            restarts: &[(0, 0.3), (0, 0.55), (0, 0.8), (1, 0.65)],
            restart_reason: "OOMKilled",
            ..c(
                "cart",
                "registry.example.com/shop/cart:2.4.1",
                Resources::new(100, 128 * MI, 250, 256 * MI),
                CART_PROFILE,
            )
        }],
        rollout: None,
        drop_id_labels: false,
        hpa: None,
        pdb: None,
        age_hours: None,
    },
    // No limits at all; leaks memory, crashes, and its cAdvisor series lack
    // id/name labels.
    WorkloadDef {
        namespace: "data",
        kind: Kind::Deployment,
        name: "etl-worker",
        replicas: 1,
        containers: &[ContainerDef {
            restarts: &[(0, 0.35), (0, 0.7)],
            restart_reason: "Error",
            ..c(
                "etl-worker",
                "registry.example.com/data/etl-worker:0.14.2",
                Resources::requests_only(500, GI),
                ETL_PROFILE,
            )
        }],
        rollout: None,
        drop_id_labels: true,
        hpa: None,
        pdb: None,
        age_hours: None,
    },
    // BestEffort: no requests, no limits.
    WorkloadDef {
        namespace: "monitoring",
        kind: Kind::Deployment,
        name: "blackbox-exporter",
        replicas: 1,
        containers: &[c(
            "blackbox-exporter",
            "quay.io/prometheus/blackbox-exporter:v0.24.0",
            Resources::NONE,
            Profile::steady(0.004, 24.0 * MI as f64),
        )],
        rollout: None,
        drop_id_labels: false,
        hpa: None,
        pdb: None,
        age_hours: None,
    },
    WorkloadDef {
        namespace: "data",
        kind: Kind::StatefulSet,
        name: "postgres",
        replicas: 2,
        containers: &[
            c(
                "postgres",
                "docker.io/library/postgres:16.2",
                Resources::new(1000, 2 * GI, 1000, 2 * GI),
                POSTGRES_PROFILE,
            ),
            c(
                "metrics-exporter",
                "quay.io/prometheuscommunity/postgres-exporter:v0.15.0",
                Resources::new(100, 64 * MI, 100, 64 * MI),
                Profile::steady(0.01, 28.0 * MI as f64),
            ),
        ],
        rollout: None,
        drop_id_labels: false,
        hpa: None,
        pdb: None,
        age_hours: None,
    },
    WorkloadDef {
        namespace: "monitoring",
        kind: Kind::DaemonSet,
        name: "node-exporter",
        replicas: 0,
        containers: &[c(
            "node-exporter",
            "quay.io/prometheus/node-exporter:v1.7.0",
            Resources::new(50, 64 * MI, 250, 128 * MI),
            Profile::steady(0.02, 22.0 * MI as f64),
        )],
        rollout: None,
        drop_id_labels: false,
        hpa: None,
        pdb: None,
        age_hours: None,
    },
    WorkloadDef {
        namespace: "batch",
        kind: Kind::CronJob,
        name: "report-builder",
        replicas: 0,
        containers: &[c(
            "report-builder",
            "registry.example.com/batch/report-builder:2024.03",
            Resources::new(1000, GI, 2000, 2 * GI),
            REPORT_PROFILE,
        )],
        rollout: None,
        drop_id_labels: false,
        hpa: None,
        pdb: None,
        age_hours: None,
    },
    WorkloadDef {
        namespace: "data",
        kind: Kind::Pod,
        name: "toolbox",
        replicas: 1,
        containers: &[c(
            "toolbox",
            "docker.io/library/busybox:1.36",
            Resources::new(10, 32 * MI, 100, 64 * MI),
            TINY_PROFILE,
        )],
        rollout: None,
        drop_id_labels: false,
        hpa: None,
        pdb: None,
        age_hours: None,
    },
    // Scaled by an HPA on CPU utilization: pods come and go with the daily
    // load. The request is well above what a pod uses, so rightsizing it
    // changes the replica count.
    WorkloadDef {
        namespace: "shop",
        kind: Kind::Deployment,
        name: "frontend",
        replicas: 2,
        containers: &[c(
            "frontend",
            "registry.example.com/shop/frontend:5.1.0",
            Resources::new(500, 384 * MI, 1000, 384 * MI),
            FRONTEND_PROFILE,
        )],
        rollout: None,
        drop_id_labels: false,
        hpa: Some(HpaDef {
            name: "frontend",
            min_replicas: 2,
            max_replicas: 8,
            cpu_target_utilization: 70.0,
        }),
        pdb: Some(PdbDef {
            name: "frontend-pdb",
            disruptions_allowed: 1,
        }),
        age_hours: None,
    },
    // Deployed 20 hours before the end: too little history to size it.
    WorkloadDef {
        namespace: "shop",
        kind: Kind::Deployment,
        name: "new-feature",
        replicas: 1,
        containers: &[c(
            "new-feature",
            "registry.example.com/shop/new-feature:0.1.0",
            Resources::new(200, 256 * MI, 800, 256 * MI),
            Profile::steady(0.05, 110.0 * MI as f64),
        )],
        rollout: None,
        drop_id_labels: false,
        hpa: None,
        pdb: None,
        age_hours: Some(20),
    },
    // Idle: a millicore and a few MiB against 100m / 128Mi.
    WorkloadDef {
        namespace: "monitoring",
        kind: Kind::Deployment,
        name: "idle-exporter",
        replicas: 1,
        containers: &[c(
            "idle-exporter",
            "quay.io/prometheus/statsd-exporter:v0.26.0",
            Resources::new(100, 128 * MI, 400, 128 * MI),
            IDLE_PROFILE,
        )],
        rollout: None,
        drop_id_labels: false,
        hpa: None,
        pdb: None,
        age_hours: None,
    },
];

/// Namespace of the walk-forward scenarios ([`SynthConfig::trends`]).
pub(crate) const TRENDS_NAMESPACE: &str = "trends";

const REGIME_UP_PROFILE: Profile = Profile {
    cpu_diurnal: 0.35,
    ..Profile::steady(0.22, 300.0 * MI as f64)
};

const REGIME_DOWN_PROFILE: Profile = Profile {
    cpu_diurnal: 0.35,
    ..Profile::steady(0.6, 900.0 * MI as f64)
};

/// An office-hours service: a strong daily cycle on working days.
const WEEKLY_PROFILE: Profile = Profile {
    cpu_diurnal: 0.6,
    cpu_burst_prob: 0.005,
    ..Profile::steady(0.4, 500.0 * MI as f64)
};

/// Flat-ish between runs, so the weekly run is the only real peak.
const BATCH_PROFILE: Profile = Profile {
    cpu_diurnal: 0.15,
    cpu_noise: 0.15,
    cpu_burst_prob: 0.0,
    ..Profile::steady(0.12, 260.0 * MI as f64)
};

const STARTUP_PROFILE: Profile = Profile {
    cpu_burst_prob: 0.005,
    ..Profile::steady(0.1, 350.0 * MI as f64)
};

const fn trend(
    name: &'static str,
    containers: &'static [ContainerDef],
    rollout: Option<RolloutDef>,
    drop_id_labels: bool,
) -> WorkloadDef {
    WorkloadDef {
        namespace: TRENDS_NAMESPACE,
        kind: Kind::Deployment,
        name,
        replicas: 1,
        containers,
        rollout,
        drop_id_labels,
        hpa: None,
        pdb: None,
        age_hours: None,
    }
}

/// Patterns a model fitted on older days must survive on the newest ones.
/// Each is placed relative to the end of the history, so any history of
/// 10 days or more holds the same story.
const TREND_WORKLOADS: &[WorkloadDef] = &[
    // Five days before the end a release doubles CPU and grows the heap.
    trend(
        "regime-up",
        &[c(
            "regime-up",
            "registry.example.com/trends/regime-up:1.0.3",
            Resources::new(250, 512 * MI, 2000, GI),
            REGIME_UP_PROFILE,
        )],
        Some(RolloutDef {
            at: RolloutAt::HoursBeforeEnd(5 * 24),
            containers: &[c(
                "regime-up",
                "registry.example.com/trends/regime-up:1.1.0",
                Resources::new(250, 512 * MI, 2000, GI),
                REGIME_UP_PROFILE,
            )],
            cpu_factor: 2.0,
            memory_factor: 1.6,
        }),
        false,
    ),
    // And one whose release made it cheaper: old peaks no longer apply.
    trend(
        "regime-down",
        &[c(
            "regime-down",
            "registry.example.com/trends/regime-down:2.3.0",
            Resources::new(750, GI, 2000, 3 * GI / 2),
            REGIME_DOWN_PROFILE,
        )],
        Some(RolloutDef {
            at: RolloutAt::HoursBeforeEnd(5 * 24),
            containers: &[c(
                "regime-down",
                "registry.example.com/trends/regime-down:2.4.0",
                Resources::new(750, GI, 2000, 3 * GI / 2),
                REGIME_DOWN_PROFILE,
            )],
            cpu_factor: 0.4,
            memory_factor: 0.6,
        }),
        false,
    ),
    trend(
        "weekly",
        &[ContainerDef {
            pattern: Pattern::Weekly {
                weekend_cpu: 0.3,
                weekend_memory: 0.85,
            },
            ..c(
                "weekly",
                "registry.example.com/trends/weekly:4.2.1",
                Resources::new(500, 768 * MI, 2000, GI),
                WEEKLY_PROFILE,
            )
        }],
        None,
        false,
    ),
    // 45 hours before the end: inside the last 3 days, and the run before
    // (213 hours before the end) inside any history of 9 days or more.
    trend(
        "weekly-batch",
        &[ContainerDef {
            pattern: Pattern::WeeklyBatch {
                last_start_hours_before_end: 45,
                hours: 3,
                cpu: 8.0,
                memory: 1.5,
            },
            ..c(
                "weekly-batch",
                "registry.example.com/trends/weekly-batch:0.9.0",
                Resources::new(150, 384 * MI, 2000, 768 * MI),
                BATCH_PROFILE,
            )
        }],
        None,
        false,
    ),
    // Crashes daily and warms up hot; without id/name labels each restart
    // resets the counter inside one series.
    trend(
        "startup",
        &[ContainerDef {
            daily_restart_secs_before_end: Some(7 * 3600 + 20 * 60),
            restart_reason: "Error",
            pattern: Pattern::StartupSpike {
                spike_secs: 300,
                cpu: 6.0,
            },
            ..c(
                "startup",
                "registry.example.com/trends/startup:3.0.0",
                Resources::new(200, 512 * MI, 1500, 768 * MI),
                STARTUP_PROFILE,
            )
        }],
        None,
        true,
    ),
];

/// A kubelet, scraped at its own offset within each interval.
pub(crate) struct Node {
    pub name: String,
    /// The kubelet's `instance` label (ip:port).
    pub instance: String,
    pub offset_secs: i64,
    /// Flaky nodes miss the odd scrape (all of that node's series at once).
    pub flaky: bool,
}

/// One run of a container: a restart starts a new instance (new container id).
pub(crate) struct Instance {
    pub container_id: String,
    /// First tick (inclusive) and last tick (exclusive) it runs.
    pub start: i64,
    pub end: i64,
    /// Fraction of the first interval it ran before its first scrape, so the
    /// counter starts near, but not at, zero.
    pub first_frac: f64,
    /// CPU seconds already used before the history starts (0 for containers
    /// started inside it): long-running counters do not start near zero.
    pub prior_cpu_secs: f64,
    pub key: u64,
    /// Why it ended, if it ended before its pod did.
    pub end_reason: Option<&'static str>,
}

impl Instance {
    pub(crate) fn oom_killed(&self) -> bool {
        self.end_reason == Some("OOMKilled")
    }

    /// Started inside the history rather than already running at its start.
    pub(crate) fn started_in_history(&self) -> bool {
        self.start > 0
    }
}

/// A [`Pattern`] resolved against the history's timeline.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Modulation {
    Plain,
    Weekly {
        weekend_cpu: f64,
        weekend_memory: f64,
    },
    /// Runs are `[anchor + n * WEEK_SECS, + len_secs)` for every integer n.
    Batch {
        anchor: i64,
        len_secs: i64,
        cpu: f64,
        memory: f64,
    },
    Startup {
        spike_ticks: i64,
        cpu: f64,
    },
}

pub(crate) struct PodContainer {
    pub name: &'static str,
    pub image: &'static str,
    /// Index of the workload container it pools into.
    pub wc: usize,
    pub res: Resources,
    pub profile: Profile,
    pub cpu_factor: f64,
    pub mem_factor: f64,
    pub modulation: Modulation,
    pub instances: Vec<Instance>,
}

impl PodContainer {
    /// (CPU, memory) factors on the profile at tick `k` (`unix_secs` is its
    /// time before the node offset). Plain containers get their release's
    /// factors untouched, so their values keep every bit.
    fn factors(&self, inst: &Instance, k: i64, unix_secs: i64) -> (f64, f64) {
        let (cpu, mem) = (self.cpu_factor, self.mem_factor);
        match self.modulation {
            Modulation::Plain => (cpu, mem),
            Modulation::Weekly {
                weekend_cpu,
                weekend_memory,
            } => {
                if usage::is_weekend(unix_secs) {
                    (cpu * weekend_cpu, mem * weekend_memory)
                } else {
                    (cpu, mem)
                }
            }
            Modulation::Batch {
                anchor,
                len_secs,
                cpu: c,
                memory: m,
            } => {
                if (unix_secs - anchor).rem_euclid(WEEK_SECS) < len_secs {
                    (cpu * c, mem * m)
                } else {
                    (cpu, mem)
                }
            }
            Modulation::Startup {
                spike_ticks,
                cpu: c,
            } => {
                if inst.started_in_history() && k - inst.start < spike_ticks {
                    (cpu * c, mem)
                } else {
                    (cpu, mem)
                }
            }
        }
    }

    /// CPU the instance would use at tick `k` if nothing capped it, in cores.
    pub(crate) fn cpu_demand(&self, inst: &Instance, k: i64, unix_secs: i64) -> f64 {
        let factor = self.factors(inst, k, unix_secs).0;
        usage::cpu_demand_cores(&self.profile, inst.key, k, unix_secs, factor)
    }

    /// Working set of the instance at tick `k`, in bytes.
    pub(crate) fn memory(
        &self,
        inst: &Instance,
        k: i64,
        unix_secs: i64,
        shape: &usage::MemoryShape,
    ) -> f64 {
        let factor = self.factors(inst, k, unix_secs).1;
        usage::memory_bytes(&self.profile, inst.key, k, shape, factor)
    }
}

pub(crate) struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: usize,
    /// Direct owner as in `kube_pod_owner` ("<none>" for a bare pod).
    pub owner_kind: &'static str,
    pub owner_name: String,
    /// cAdvisor series exist for ticks [start, end).
    pub start: i64,
    pub end: i64,
    /// kube-state-metrics keeps a completed Job's pod until the Job is deleted.
    pub ksm_end: i64,
    /// The pod's cgroup path; containers live below it.
    pub cgroup: String,
    pub pause_id: String,
    pub key: u64,
    pub drop_id_labels: bool,
    pub containers: Vec<PodContainer>,
}

/// A ReplicaSet or a Job: something kube-state-metrics reports an owner for.
pub(crate) struct OwnedObject {
    pub namespace: String,
    pub name: String,
    pub owner_name: String,
    pub start: i64,
    pub end: i64,
}

/// A Deployment or StatefulSet: what kube-state-metrics reports replicas,
/// HPAs and PDBs for.
pub(crate) struct ControllerObject {
    pub namespace: String,
    pub kind: Kind,
    pub name: String,
    /// `spec.replicas` when no HPA sets it.
    pub replicas: usize,
    /// First tick (inclusive) and last tick (exclusive) the object exists.
    pub start: i64,
    pub end: i64,
    pub hpa: Option<&'static HpaDef>,
    pub pdb: Option<&'static PdbDef>,
}

/// The unit of the ground truth: all pods of one workload's container.
pub(crate) struct WorkloadContainer {
    pub namespace: String,
    pub kind: Kind,
    pub workload: String,
    pub container: String,
    pub scenario: Option<TruthScenario>,
}

pub(crate) struct Cluster {
    pub start: i64,
    pub end: i64,
    /// `end` down to the hour: what trend patterns are placed against.
    pub end_hour: i64,
    pub interval_secs: i64,
    /// `[from, to)` unix seconds in which Prometheus scraped nothing.
    pub outage: Option<(i64, i64)>,
    pub ticks: i64,
    pub ksm_offset_secs: i64,
    pub missed_scrape_key: u64,
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    pub controllers: Vec<ControllerObject>,
    pub replicasets: Vec<OwnedObject>,
    pub jobs: Vec<OwnedObject>,
    pub workload_containers: Vec<WorkloadContainer>,
    pub events: Vec<TruthEvent>,
}

impl Cluster {
    /// Unix seconds at which tick `k` starts (the node offset comes on top).
    pub(crate) fn tick_time(&self, k: i64) -> i64 {
        self.start + k * self.interval_secs
    }

    /// `spec.replicas` of a controller at tick `k`, `None` while it does not exist.
    pub(crate) fn replicas_at(&self, c: &ControllerObject, k: i64) -> Option<usize> {
        if k < c.start || k >= c.end {
            return None;
        }
        Some(match c.hpa {
            Some(h) => usage::hpa_replicas(h.min_replicas, h.max_replicas, self.tick_time(k)),
            None => c.replicas,
        })
    }

    /// Runs of ticks within `[start, end)` during which replica slot `slot`
    /// of controller `c` is wanted. Scaling down removes the highest slots
    /// (the newest pods) first, so each run is one pod.
    fn slot_runs(
        &self,
        c: &ControllerObject,
        slot: usize,
        start: i64,
        end: i64,
    ) -> Vec<(i64, i64)> {
        let mut runs = Vec::new();
        let mut open: Option<i64> = None;
        for k in start..end {
            let wanted = self.replicas_at(c, k).is_some_and(|n| n > slot);
            match (wanted, open) {
                (true, None) => open = Some(k),
                (false, Some(from)) => {
                    runs.push((from, k));
                    open = None;
                }
                _ => {}
            }
        }
        if let Some(from) = open {
            runs.push((from, end));
        }
        runs
    }

    pub(crate) fn scrape_missed(&self, node: usize, k: i64) -> bool {
        self.nodes[node].flaky
            && usage::unit(self.missed_scrape_key, k, node as u64 * 7 + 100) < MISSED_SCRAPE_PROB
    }

    pub(crate) fn in_outage(&self, ts: i64) -> bool {
        self.outage.is_some_and(|(from, to)| from <= ts && ts < to)
    }

    /// Whether a kube-state-metrics (or any node-less) sample at `ts` is stored.
    pub(crate) fn stored(&self, ts: i64) -> bool {
        ts < self.end && !self.in_outage(ts)
    }

    /// Whether the kubelet of `node` delivered its tick-`k` scrape, taken at `ts`.
    pub(crate) fn scraped(&self, node: usize, k: i64, ts: i64) -> bool {
        self.stored(ts) && !self.scrape_missed(node, k)
    }

    /// The first tick at or after unix second `t`.
    fn tick_at_or_after(&self, t: i64) -> i64 {
        (t - self.start + self.interval_secs - 1).div_euclid(self.interval_secs)
    }

    pub(crate) fn build(cfg: &SynthConfig) -> Self {
        use rand::SeedableRng;
        let (start, end) = (cfg.start, cfg.end);
        let interval_secs = cfg.scrape_interval_secs.max(1);
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        // Their own stream: switching the trends on renames nothing else.
        let mut trends_rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x7472_656e_6473);
        let ticks = (end - start + interval_secs - 1) / interval_secs;
        let mut cl = Cluster {
            start,
            end,
            end_hour: end - end.rem_euclid(3600),
            interval_secs,
            outage: cfg
                .outage
                .map(|(from, hours)| (from, from + hours.max(0) * 3600)),
            ticks,
            ksm_offset_secs: 9 % interval_secs,
            missed_scrape_key: rng.gen(),
            nodes: Vec::new(),
            pods: Vec::new(),
            controllers: Vec::new(),
            replicasets: Vec::new(),
            jobs: Vec::new(),
            workload_containers: Vec::new(),
            events: Vec::new(),
        };
        for copy in cfg.first_copy..cfg.first_copy + cfg.scale.max(1) {
            cl.build_copy(&mut rng, copy);
            if cfg.trends {
                cl.build_trends(&mut trends_rng, copy);
            }
        }
        cl.events
            .sort_by(|a, b| (a.time, &a.pod).cmp(&(b.time, &b.pod)));
        cl
    }

    fn build_copy(&mut self, rng: &mut ChaCha8Rng, copy: usize) {
        let first_node = self.nodes.len();
        for i in first_node..first_node + NODES_PER_COPY {
            self.nodes.push(Node {
                name: format!("node-{}", i + 1),
                instance: format!("10.0.{}.{}:10250", i / 200, i % 200 + 11),
                offset_secs: (i as i64 * 17) % self.interval_secs,
                flaky: i % NODES_PER_COPY == 2,
            });
        }
        for def in WORKLOADS {
            self.build_workload(rng, def, copy, first_node);
        }
    }

    /// The trend scenarios of one copy, on the nodes of that copy.
    fn build_trends(&mut self, rng: &mut ChaCha8Rng, copy: usize) {
        let first_node = self.nodes.len() - NODES_PER_COPY;
        for def in TREND_WORKLOADS {
            let wc_base = self.build_workload(rng, def, copy, first_node);
            for (j, cd) in def.containers.iter().enumerate() {
                self.workload_containers[wc_base + j].scenario =
                    self.scenario_of(def, cd, wc_base + j);
            }
        }
    }

    /// The planted pattern of one trend container, read back from the plan.
    fn scenario_of(
        &self,
        def: &WorkloadDef,
        cd: &ContainerDef,
        wc: usize,
    ) -> Option<TruthScenario> {
        if let Some(r) = &def.rollout {
            return Some(TruthScenario::RegimeChange {
                at: self.tick_time(self.rollout_tick(r)),
                cpu_factor: r.cpu_factor,
                memory_factor: r.memory_factor,
            });
        }
        match self.modulation_of(cd.pattern) {
            Modulation::Plain => None,
            Modulation::Weekly {
                weekend_cpu,
                weekend_memory,
            } => {
                // Saturdays 00:00 UTC (day 2 was a Saturday) up to the end.
                let mut weekends = Vec::new();
                let mut sat =
                    2 * 86_400 + (self.start - 2 * 86_400).div_euclid(WEEK_SECS) * WEEK_SECS;
                while sat < self.end {
                    weekends.push((sat, sat + 2 * 86_400));
                    sat += WEEK_SECS;
                }
                weekends.retain(|&(_, to)| to > self.start);
                Some(TruthScenario::Weekly {
                    weekday_cpu_factor: 1.0,
                    weekend_cpu_factor: weekend_cpu,
                    weekday_memory_factor: 1.0,
                    weekend_memory_factor: weekend_memory,
                    weekends,
                })
            }
            Modulation::Batch {
                anchor,
                len_secs,
                cpu,
                memory,
            } => {
                let mut batches = Vec::new();
                let mut from =
                    anchor + (self.start - len_secs - anchor).div_euclid(WEEK_SECS) * WEEK_SECS;
                while from < self.end {
                    if from + len_secs > self.start {
                        batches.push((from, from + len_secs));
                    }
                    from += WEEK_SECS;
                }
                Some(TruthScenario::WeeklyBatch {
                    period_secs: WEEK_SECS,
                    cpu_factor: cpu,
                    memory_factor: memory,
                    batches,
                })
            }
            Modulation::Startup { spike_ticks, cpu } => {
                let mut starts: Vec<i64> = self
                    .pods
                    .iter()
                    .flat_map(|p| &p.containers)
                    .filter(|c| c.wc == wc)
                    .flat_map(|c| &c.instances)
                    .filter(|i| i.started_in_history())
                    .map(|i| self.tick_time(i.start))
                    .collect();
                starts.sort_unstable();
                Some(TruthScenario::Startup {
                    starts,
                    spike_secs: spike_ticks * self.interval_secs,
                    cpu_factor: cpu,
                })
            }
        }
    }

    fn modulation_of(&self, pattern: Pattern) -> Modulation {
        match pattern {
            Pattern::Plain => Modulation::Plain,
            Pattern::Weekly {
                weekend_cpu,
                weekend_memory,
            } => Modulation::Weekly {
                weekend_cpu,
                weekend_memory,
            },
            Pattern::WeeklyBatch {
                last_start_hours_before_end,
                hours,
                cpu,
                memory,
            } => Modulation::Batch {
                anchor: self.end_hour - last_start_hours_before_end * 3600,
                len_secs: hours * 3600,
                cpu,
                memory,
            },
            Pattern::StartupSpike { spike_secs, cpu } => Modulation::Startup {
                spike_ticks: (spike_secs + self.interval_secs - 1) / self.interval_secs,
                cpu,
            },
        }
    }

    fn rollout_tick(&self, r: &RolloutDef) -> i64 {
        let t = match r.at {
            RolloutAt::Fraction(f) => (f * self.ticks as f64).round() as i64,
            RolloutAt::HoursBeforeEnd(h) => self.tick_at_or_after(self.end_hour - h * 3600),
        };
        t.clamp(1, self.ticks)
    }

    /// Plans one workload of copy `copy`; returns its first workload-container index.
    fn build_workload(
        &mut self,
        rng: &mut ChaCha8Rng,
        def: &'static WorkloadDef,
        copy: usize,
        first_node: usize,
    ) -> usize {
        let ns = if copy == 0 {
            def.namespace.to_string()
        } else {
            format!("{}-{}", def.namespace, copy + 1)
        };
        let wc_base = self.workload_containers.len();
        for cd in def.containers {
            self.workload_containers.push(WorkloadContainer {
                namespace: ns.clone(),
                kind: def.kind,
                workload: def.name.to_string(),
                container: cd.name.to_string(),
                scenario: None,
            });
        }
        let node_for = |rng: &mut ChaCha8Rng| first_node + rng.gen_range(0..NODES_PER_COPY);
        match def.kind {
            Kind::Deployment => self.build_deployment(rng, def, &ns, first_node, wc_base),
            Kind::StatefulSet | Kind::DaemonSet | Kind::Pod => {
                if def.kind == Kind::StatefulSet {
                    self.controllers.push(ControllerObject {
                        namespace: ns.clone(),
                        kind: def.kind,
                        name: def.name.to_string(),
                        replicas: def.replicas,
                        start: 0,
                        end: self.ticks,
                        hpa: None,
                        pdb: def.pdb.as_ref(),
                    });
                }
                let count = if def.kind == Kind::DaemonSet {
                    NODES_PER_COPY
                } else {
                    def.replicas
                };
                for r in 0..count {
                    let (name, owner_kind, owner_name, node) = match def.kind {
                        Kind::StatefulSet => (
                            format!("{}-{}", def.name, r),
                            "StatefulSet",
                            def.name.to_string(),
                            node_for(rng),
                        ),
                        Kind::DaemonSet => (
                            format!("{}-{}", def.name, k8s_name_suffix(rng, 5)),
                            "DaemonSet",
                            def.name.to_string(),
                            first_node + r,
                        ),
                        _ => (
                            def.name.to_string(),
                            "<none>",
                            "<none>".to_string(),
                            node_for(rng),
                        ),
                    };
                    self.push_pod(
                        rng,
                        PodPlan {
                            namespace: &ns,
                            name,
                            node,
                            owner_kind,
                            owner_name,
                            start: 0,
                            end: self.ticks,
                            ksm_end: self.ticks,
                            def,
                            containers: def.containers,
                            cpu_factor: 1.0,
                            mem_factor: 1.0,
                            replica: r,
                            wc_base,
                        },
                    );
                }
            }
            Kind::CronJob => self.build_cronjob(rng, def, &ns, first_node, wc_base),
        }
        wc_base
    }

    fn build_deployment(
        &mut self,
        rng: &mut ChaCha8Rng,
        def: &'static WorkloadDef,
        ns: &str,
        first_node: usize,
        wc_base: usize,
    ) {
        let created = def.age_hours.map_or(0, |h| {
            (self.ticks - h * 3600 / self.interval_secs).clamp(0, self.ticks)
        });
        self.controllers.push(ControllerObject {
            namespace: ns.to_string(),
            kind: def.kind,
            name: def.name.to_string(),
            replicas: def.replicas,
            start: created,
            end: self.ticks,
            hpa: def.hpa.as_ref(),
            pdb: def.pdb.as_ref(),
        });
        let controller = self.controllers.len() - 1;
        let slots = def.hpa.as_ref().map_or(def.replicas, |h| h.max_replicas);
        let mut generations = vec![(created, def.containers, 1.0, 1.0)];
        if let Some(r) = &def.rollout {
            let t = self.rollout_tick(r);
            generations.push((t.max(created), r.containers, r.cpu_factor, r.memory_factor));
        }
        let node_for = |rng: &mut ChaCha8Rng| first_node + rng.gen_range(0..NODES_PER_COPY);
        for (g, &(gen_start, containers, cpu_factor, mem_factor)) in generations.iter().enumerate()
        {
            let rs = format!("{}-{}", def.name, k8s_name_suffix(rng, 10));
            self.replicasets.push(OwnedObject {
                namespace: ns.to_string(),
                name: rs.clone(),
                owner_name: def.name.to_string(),
                start: gen_start,
                end: self.ticks,
            });
            for r in 0..slots {
                // Surge one pod at a time: each new pod starts one
                // tick before the old pod it replaces goes away.
                let start = if g == 0 {
                    gen_start
                } else {
                    gen_start + 2 * r as i64
                };
                let end = match generations.get(g + 1) {
                    Some(&(next, ..)) => next + 2 * r as i64 + 1,
                    None => self.ticks,
                };
                let (start, end) = (start.min(self.ticks), end.min(self.ticks));
                if start >= end {
                    continue;
                }
                let runs = self.slot_runs(&self.controllers[controller], r, start, end);
                for (run_start, run_end) in runs {
                    let name = format!("{}-{}", rs, k8s_name_suffix(rng, 5));
                    if g > 0 && r == 0 && run_start == start {
                        self.events.push(TruthEvent {
                            time: self.tick_time(run_start),
                            kind: TruthEventKind::Rollout,
                            namespace: ns.to_string(),
                            workload: def.name.to_string(),
                            pod: name.clone(),
                            container: String::new(),
                            reason: format!("new ReplicaSet {rs}"),
                        });
                    }
                    let node = node_for(rng);
                    self.push_pod(
                        rng,
                        PodPlan {
                            namespace: ns,
                            name,
                            node,
                            owner_kind: "ReplicaSet",
                            owner_name: rs.clone(),
                            start: run_start,
                            end: run_end,
                            ksm_end: run_end,
                            def,
                            containers,
                            cpu_factor,
                            mem_factor,
                            replica: r,
                            wc_base,
                        },
                    );
                }
            }
        }
    }

    fn build_cronjob(
        &mut self,
        rng: &mut ChaCha8Rng,
        def: &'static WorkloadDef,
        ns: &str,
        first_node: usize,
        wc_base: usize,
    ) {
        let first_run =
            (self.start + CRON_PERIOD_SECS - 1).div_euclid(CRON_PERIOD_SECS) * CRON_PERIOD_SECS;
        let mut job_pods = Vec::new();
        let mut run = first_run;
        while run < self.end {
            // The pod is scheduled at the first tick at or after the run time.
            let start = (run - self.start + self.interval_secs - 1) / self.interval_secs;
            let life_secs = rng.gen_range(300..=600);
            let life_ticks = ((life_secs + self.interval_secs / 2) / self.interval_secs).max(2);
            let end = (start + life_ticks).min(self.ticks);
            let job = format!("{}-{}", def.name, run / 60);
            let name = format!("{}-{}", job, k8s_name_suffix(rng, 5));
            if start < end {
                self.jobs.push(OwnedObject {
                    namespace: ns.to_string(),
                    name: job.clone(),
                    owner_name: def.name.to_string(),
                    start,
                    end: self.ticks,
                });
                let node = first_node + rng.gen_range(0..NODES_PER_COPY);
                job_pods.push((self.jobs.len() - 1, self.pods.len(), end));
                self.push_pod(
                    rng,
                    PodPlan {
                        namespace: ns,
                        name,
                        node,
                        owner_kind: "Job",
                        owner_name: job,
                        start,
                        end,
                        ksm_end: self.ticks,
                        def,
                        containers: def.containers,
                        cpu_factor: 1.0,
                        mem_factor: 1.0,
                        replica: 0,
                        wc_base,
                    },
                );
                // The last container finishes with the pod.
                for pc in &mut self.pods.last_mut().expect("just pushed").containers {
                    if let Some(last) = pc.instances.last_mut() {
                        last.end_reason = Some("Completed");
                    }
                }
            }
            run += CRON_PERIOD_SECS;
        }
        // The CronJob controller deletes a Job once enough newer ones have finished.
        for i in 0..job_pods.len() {
            if let Some(&(_, _, newer_end)) = job_pods.get(i + JOB_HISTORY_LIMIT) {
                let (job, pod, _) = job_pods[i];
                self.jobs[job].end = newer_end;
                self.pods[pod].ksm_end = newer_end;
            }
        }
    }

    fn push_pod(&mut self, rng: &mut ChaCha8Rng, plan: PodPlan<'_>) {
        let uid = uuid_v4(rng);
        let qos = if plan.containers.iter().all(|c| c.res.is_guaranteed()) {
            "/kubepods"
        } else if plan.containers.iter().all(|c| c.res.is_empty()) {
            "/kubepods/besteffort"
        } else {
            "/kubepods/burstable"
        };
        let node = plan.node;
        let mut pod = Pod {
            namespace: plan.namespace.to_string(),
            name: plan.name,
            uid: uid.clone(),
            node,
            owner_kind: plan.owner_kind,
            owner_name: plan.owner_name,
            start: plan.start,
            end: plan.end,
            ksm_end: plan.ksm_end.max(plan.end),
            cgroup: format!("{qos}/pod{uid}"),
            pause_id: hex_id(rng),
            key: rng.gen(),
            drop_id_labels: plan.def.drop_id_labels,
            containers: Vec::new(),
        };
        for (j, cd) in plan.containers.iter().enumerate() {
            let mut cuts: Vec<i64> = cd
                .restarts
                .iter()
                .filter(|&&(replica, _)| replica == plan.replica)
                .map(|&(_, at)| (at * self.ticks as f64).round() as i64)
                .collect();
            if let Some(before_end) = cd.daily_restart_secs_before_end {
                let mut t = self.end_hour - before_end;
                while t > self.tick_time(pod.start) {
                    cuts.push(self.tick_at_or_after(t));
                    t -= 86_400;
                }
            }
            cuts.retain(|&t| t > pod.start && t < pod.end);
            cuts.sort_unstable();
            cuts.dedup();
            let mut bounds = vec![pod.start];
            bounds.extend(&cuts);
            bounds.push(pod.end);
            let mut instances = Vec::new();
            for w in bounds.windows(2) {
                let restarted = w[1] < pod.end;
                instances.push(Instance {
                    container_id: hex_id(rng),
                    start: w[0],
                    end: w[1],
                    first_frac: rng.gen_range(0.1..0.9),
                    prior_cpu_secs: if w[0] == 0 {
                        cd.profile.cpu_cores * plan.cpu_factor * rng.gen_range(3600.0..259_200.0)
                    } else {
                        0.0
                    },
                    key: rng.gen(),
                    end_reason: restarted.then_some(cd.restart_reason),
                });
                if restarted {
                    self.events.push(TruthEvent {
                        time: self.tick_time(w[1]),
                        kind: TruthEventKind::Restart,
                        namespace: pod.namespace.clone(),
                        workload: plan.def.name.to_string(),
                        pod: pod.name.clone(),
                        container: cd.name.to_string(),
                        reason: cd.restart_reason.to_string(),
                    });
                }
            }
            pod.containers.push(PodContainer {
                name: cd.name,
                image: cd.image,
                wc: plan.wc_base + j,
                res: cd.res,
                profile: cd.profile,
                cpu_factor: plan.cpu_factor,
                mem_factor: plan.mem_factor,
                modulation: self.modulation_of(cd.pattern),
                instances,
            });
        }
        self.pods.push(pod);
    }
}

struct PodPlan<'a> {
    namespace: &'a str,
    name: String,
    node: usize,
    owner_kind: &'static str,
    owner_name: String,
    start: i64,
    end: i64,
    ksm_end: i64,
    def: &'static WorkloadDef,
    containers: &'static [ContainerDef],
    cpu_factor: f64,
    mem_factor: f64,
    replica: usize,
    wc_base: usize,
}

/// Kubernetes' generated-name alphabet (no vowels, no look-alikes).
fn k8s_name_suffix(rng: &mut ChaCha8Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn hex_id(rng: &mut ChaCha8Rng) -> String {
    (0..4)
        .map(|_| format!("{:016x}", rng.gen::<u64>()))
        .collect()
}

fn uuid_v4(rng: &mut ChaCha8Rng) -> String {
    let a: u128 = rng.gen();
    let a = (a & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{a:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
