-- Restarts, OOM kills and CFS throttling per workload container and hour: what the
-- analyzer needs to tell censored usage (OOM-killed, throttled) from real usage.
create table signal_hours (
    container_id bigint not null references containers (id) on delete cascade,
    hour_start bigint not null check (hour_start % 3600 = 0),
    restarts bigint not null check (restarts >= 0),
    oom_kills bigint not null check (oom_kills >= 0),
    cfs_periods double precision not null,
    cfs_throttled_periods double precision not null,
    primary key (container_id, hour_start)
);

-- Workload-level facts (replicas, HPA, PDB, annotations), the newest observation each.
create table workloads (
    cluster text not null,
    namespace text not null,
    kind text not null,
    name text not null,
    seen_at bigint not null,
    body text not null,
    primary key (cluster, namespace, kind, name)
);
