-- Every in-place resize rightsizer sent (and every rollback): who, what, when, before, after
-- and what came of it. Listed at GET /api/v1/changes; pruned with history by retention.
create table changes (
    id integer primary key autoincrement,
    at integer not null,
    cluster text not null,
    namespace text not null,
    pod text not null,
    container text not null,
    workload text,
    actor text not null,
    kind text not null check (kind in ('resize', 'rollback')),
    before text not null,
    after text not null,
    outcome text not null,
    reason text not null
);

create index changes_by_time on changes (at);
