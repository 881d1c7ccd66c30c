-- Scheduled jobs (analysis, reports) of several replicas sharing this database run once per
-- period: a replica leases (job, period) before running it and marks it done after. A lease
-- whose holder died expires and can be taken over. (Collection chunks are claimed with
-- session advisory locks instead, which the database frees when a connection dies.)
create table job_leases (
    job text not null,
    period bigint not null,
    holder text not null,
    lease_until bigint not null,
    done boolean not null default false,
    primary key (job, period)
);
