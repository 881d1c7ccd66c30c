-- OOM kills seen before their hour is collected (the Kubernetes API's pod status, or the
-- collection's look at the current hour). The analysis takes, per hour, the larger of these
-- and the collected signals, so the kill raises memory at once and is not counted twice.
create table oom_kills (
    cluster text not null,
    namespace text not null,
    kind text not null,
    workload text not null,
    container text not null,
    hour_start integer not null,
    kills integer not null,
    primary key (cluster, namespace, kind, workload, container, hour_start)
);
