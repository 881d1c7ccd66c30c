-- Hourly summaries packed into one row per day, as on Postgres (see src/store/packed.rs and
-- migrations/postgres/0005_day_rows.sql): a version byte, then per hour its offset in the
-- day followed by the sketch's length and the sketch, or by restarts, OOM kills, CFS periods
-- and throttled periods, all big-endian.
--
-- This migration only creates the tables. SQLite has no int4send/float8send (no function
-- gives a REAL's IEEE 754 bytes), so the existing hour rows cannot be packed in SQL; the
-- store packs them in Rust right after the migrations (SqliteStore::pack_hour_rows), in one
-- transaction that also drops usage_hours and signal_hours. It runs whenever those tables
-- still exist, so a process stopped between this migration and the packing packs on its
-- next start.
create table usage_days (
    container_id integer not null references containers (id) on delete cascade,
    resource text not null check (resource in ('cpu', 'memory')),
    day integer not null check (day % 86400 = 0),
    hours blob not null,
    primary key (container_id, resource, day)
) strict;

create table signal_days (
    container_id integer not null references containers (id) on delete cascade,
    day integer not null check (day % 86400 = 0),
    hours blob not null,
    primary key (container_id, day)
) strict;
