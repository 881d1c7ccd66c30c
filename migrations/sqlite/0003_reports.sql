-- Generated fleet reports. body is the whole report as JSON (every format is rendered from it);
-- summary repeats its fleet summary so a list of reports never reads the bodies.
-- autoincrement: an id is never reused after retention pruned its report, so links stay honest.
create table reports (
    id integer primary key autoincrement,
    generated_at integer not null,
    summary text not null,
    body text not null
) strict;

create index reports_by_generated_at on reports (generated_at, id);
