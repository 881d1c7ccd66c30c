-- Retention drops whole months of history: the day tables become partitioned by month (range
-- of `day`), so a month past retention is a DETACH + DROP instead of a DELETE that leaves
-- dead rows to vacuum. Rows move into a partition per month they cover. Months are created
-- ahead of writes by the store; the DEFAULT partition only catches a write that came first,
-- and the store moves such rows out when it creates their month.

alter table usage_days rename to usage_days_unpartitioned;
alter index usage_days_pkey rename to usage_days_unpartitioned_pkey;
create table usage_days (
    container_id bigint not null references containers (id) on delete cascade,
    resource text not null check (resource in ('cpu', 'memory')),
    day bigint not null check (day % 86400 = 0),
    hours bytea not null,
    primary key (container_id, resource, day)
) partition by range (day);
create table usage_days_default partition of usage_days default;

alter table signal_days rename to signal_days_unpartitioned;
alter index signal_days_pkey rename to signal_days_unpartitioned_pkey;
create table signal_days (
    container_id bigint not null references containers (id) on delete cascade,
    day bigint not null check (day % 86400 = 0),
    hours bytea not null,
    primary key (container_id, day)
) partition by range (day);
create table signal_days_default partition of signal_days default;

-- One partition per month holding rows, named <table>_pYYYYMM like the store names them.
do $$
declare
    t text;
    m date;
begin
    foreach t in array array['usage_days', 'signal_days'] loop
        for m in execute format(
            'select distinct date_trunc(''month'', to_timestamp(day) at time zone ''UTC'')::date from %I',
            t || '_unpartitioned')
        loop
            execute format('create table %I partition of %I for values from (%s) to (%s)',
                t || '_p' || to_char(m, 'YYYYMM'), t,
                extract(epoch from m::timestamp at time zone 'UTC')::bigint,
                extract(epoch from (m + interval '1 month')::timestamp at time zone 'UTC')::bigint);
        end loop;
    end loop;
end
$$;

insert into usage_days select container_id, resource, day, hours from usage_days_unpartitioned;
drop table usage_days_unpartitioned;
insert into signal_days select container_id, day, hours from signal_days_unpartitioned;
drop table signal_days_unpartitioned;
