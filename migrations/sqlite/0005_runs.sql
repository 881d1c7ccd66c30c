-- Collection and analysis runs, shared by every replica on this database so any of them can
-- answer GET /api/v1/runs/{id}. The partial unique index is the fleet-wide guard: at most one
-- running run of each kind. A run's holder renews lease_until while it works; a run whose
-- lease expired (its replica died) no longer blocks the next start.
create table runs (
    seq integer primary key autoincrement,
    kind text not null check (kind in ('collect', 'analyze')),
    status text not null check (status in ('running', 'succeeded', 'failed')),
    trigger text not null,
    holder text not null,
    started_at integer not null,
    lease_until integer not null,
    finished_at integer,
    done integer not null default 0,
    total integer not null default 0,
    result text,
    error text
);

create unique index runs_one_running_per_kind on runs (kind) where status = 'running';
