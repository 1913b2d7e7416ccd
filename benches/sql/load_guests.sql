-- keepsake benchmark: guests rows :lo..:hi (the biggest table, about half of the data).
-- psql variables: lo, hi, n_couples. Run after prelude.sql in the same session. Re-running
-- with a higher range appends (the table is created only by the first run).
SET client_min_messages = warning;  -- no "already exists" notice when topping up
BEGIN;
CREATE TABLE IF NOT EXISTS guests (
    id              bigint NOT NULL,
    couple_id       integer NOT NULL,
    first_name      text NOT NULL,
    last_name       text NOT NULL,
    email           text,
    phone           text,
    rsvp            rsvp_status NOT NULL,
    party_size      smallint NOT NULL,
    table_number    integer,
    dietary         text[] NOT NULL,
    details         jsonb NOT NULL,
    notes           text,
    invited_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
INSERT INTO guests
SELECT i,
       1 + pg_temp.h('gc', i) % :n_couples,
       fn,
       ln,
       CASE WHEN pg_temp.h('ge', i) % 10 < 9
            THEN lower(fn) || '.' || lower(ln) || '.' || substr(md5('em:' || i), 1, 6) || '@'
                 || pg_temp.pick(ARRAY['mail.example.com','post.example.org','inbox.example.net','fastmail.example'], 'gd', i)
       END,
       CASE WHEN pg_temp.h('gp', i) % 10 < 7
            THEN '+1-' || (200 + pg_temp.h('gp1', i) % 800) || '-555-' || lpad((pg_temp.h('gp2', i) % 10000)::text, 4, '0')
       END,
       (enum_range(NULL::rsvp_status))[1 + pg_temp.h('rsvp', i) % 4],
       1 + pg_temp.h('ps', i) % 4,
       CASE WHEN pg_temp.h('tn', i) % 10 < 7 THEN 1 + pg_temp.h('tn1', i) % 40 END,
       CASE pg_temp.h('diet', i) % 8
            WHEN 0 THEN ARRAY['vegetarian'] WHEN 1 THEN ARRAY['vegan'] WHEN 2 THEN ARRAY['gluten-free']
            WHEN 3 THEN ARRAY['nut allergy', 'vegetarian'] WHEN 4 THEN ARRAY['halal'] ELSE '{}'::text[]
       END,
       jsonb_build_object(
           'side', CASE WHEN pg_temp.h('side', i) % 2 = 0 THEN 'partner1' ELSE 'partner2' END,
           'relation', pg_temp.pick(ARRAY['family','friend','colleague','neighbour','university','plus-one'], 'rel', i),
           'plus_one', pg_temp.h('po', i) % 4 = 0,
           'address', jsonb_build_object(
               'street', (1 + pg_temp.h('st', i) % 9999) || ' '
                         || pg_temp.pick(ARRAY['Oak','Maple','Cedar','Elm','Pine','Willow','Birch','Lake','Hill','Park'], 'stn', i)
                         || ' ' || pg_temp.pick(ARRAY['St','Ave','Rd','Ln','Blvd','Way'], 'sts', i),
               'city', pg_temp.city(i),
               'zip', lpad((pg_temp.h('zip', i) % 100000)::text, 5, '0')),
           'accommodation', pg_temp.pick(ARRAY['hotel block A','hotel block B','staying with family','local','airbnb'], 'acc', i),
           'meal', pg_temp.pick(ARRAY['beef','fish','chicken','risotto','kids menu'], 'meal', i),
           'song_request', pg_temp.pick(ARRAY['September','Dancing Queen','Mr. Brightside','Shout','Valerie','Uptown Funk','Africa','Crazy in Love'], 'song', i),
           'invite_code', substr(md5('inv:' || i), 1, 10)),
       CASE WHEN pg_temp.h('nt', i) % 3 <> 0
            THEN pg_temp.pick(ARRAY['Met the couple at university','Childhood friend of the bride','Works with the groom',
                                    'Cousin from out of town','Neighbour for ten years','Old roommate'], 'nt1', i)
                 || '; ' || pg_temp.pick(ARRAY['allergic to nuts','needs wheelchair access','arrives late','bringing kids',
                                              'prefers a quiet table','flying in the day before','gives a toast'], 'nt2', i)
                 || ' (ref ' || md5('note:' || i) || ')'
       END,
       pg_temp.ts('inv', i),
       pg_temp.ts('upd', i)
FROM generate_series(:lo::bigint, :hi::bigint) AS s(i),
     LATERAL (SELECT pg_temp.first_name(i) AS fn, pg_temp.last_name(i) AS ln) AS names
ORDER BY i;
COMMIT;
