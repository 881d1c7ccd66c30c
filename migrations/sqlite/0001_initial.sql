-- Hourly usage summaries, collection bookkeeping and the latest recommendations.
-- Tables are strict so a value of the wrong type is refused instead of silently stored.

-- One row per workload container ever seen; requests/limits are those at seen_at.
create table containers (
    id integer primary key,
    cluster text not null,
    namespace text not null,
    kind text not null,
    workload text not null,
    container text not null,
    cpu_request_millicores integer,
    cpu_limit_millicores integer,
    memory_request_bytes integer,
    memory_limit_bytes integer,
    seen_at integer not null,
    unique (cluster, namespace, kind, workload, container)
) strict;

-- One mergeable summary per container, resource and hour; never raw samples.
-- sample_count, sum and max repeat the sketch's header so SQL can aggregate without decoding.
create table usage_hours (
    container_id integer not null references containers (id) on delete cascade,
    resource text not null check (resource in ('cpu', 'memory')),
    hour_start integer not null check (hour_start % 3600 = 0),
    sample_count integer not null check (sample_count >= 0),
    sum real not null,
    max real not null,
    sketch blob not null,
    primary key (container_id, resource, hour_start)
) strict;

-- Hours already collected per cluster, including hours that had no usage at all.
create table collected_hours (
    cluster text not null,
    hour_start integer not null check (hour_start % 3600 = 0),
    primary key (cluster, hour_start)
) strict;

-- The newest recommendation per workload container; body is the whole Recommendation as JSON.
create table recommendations (
    cluster text not null,
    namespace text not null,
    kind text not null,
    workload text not null,
    container text not null,
    status text not null,
    confidence text not null,
    computed_at integer not null,
    body text not null,
    primary key (cluster, namespace, kind, workload, container)
) strict;
