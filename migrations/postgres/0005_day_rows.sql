-- Hourly summaries packed into one row per day (see src/store/packed.rs): a row per hour
-- cost about 200 bytes around a 35-byte sketch. Existing hour rows are packed here, in SQL,
-- in the same big-endian format the code writes: a version byte (1), then per hour its
-- offset in the day (one byte) followed by the sketch's length (int4) and the sketch, or
-- by restarts and OOM kills (int4) and CFS periods and throttled periods (float8).
create table usage_days (
    container_id bigint not null references containers (id) on delete cascade,
    resource text not null check (resource in ('cpu', 'memory')),
    day bigint not null check (day % 86400 = 0),
    hours bytea not null,
    primary key (container_id, resource, day)
);

insert into usage_days (container_id, resource, day, hours)
select container_id, resource, hour_start - hour_start % 86400,
       '\x01'::bytea || string_agg(
           substring(int2send(((hour_start % 86400) / 3600)::smallint) from 2 for 1)
           || int4send(length(sketch)) || sketch,
           ''::bytea order by hour_start)
from usage_hours
group by container_id, resource, hour_start - hour_start % 86400;

drop table usage_hours;

create table signal_days (
    container_id bigint not null references containers (id) on delete cascade,
    day bigint not null check (day % 86400 = 0),
    hours bytea not null,
    primary key (container_id, day)
);

insert into signal_days (container_id, day, hours)
select container_id, hour_start - hour_start % 86400,
       '\x01'::bytea || string_agg(
           substring(int2send(((hour_start % 86400) / 3600)::smallint) from 2 for 1)
           || int4send(restarts::int) || int4send(oom_kills::int)
           || float8send(cfs_periods) || float8send(cfs_throttled_periods),
           ''::bytea order by hour_start)
from signal_hours
group by container_id, hour_start - hour_start % 86400;

drop table signal_hours;
