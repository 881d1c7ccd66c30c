-- Generated fleet reports. body is the whole report as JSON (every format is rendered from it);
-- summary repeats its fleet summary so a list of reports never reads the bodies.
-- An identity column never hands out an id twice, so links to pruned reports stay honest.
create table reports (
    id bigint generated always as identity primary key,
    generated_at bigint not null,
    summary text not null,
    body text not null
);

create index reports_by_generated_at on reports (generated_at, id);
