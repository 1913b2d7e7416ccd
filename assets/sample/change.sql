-- keepsake sample: a "realistic change" applied to a database loaded from
-- wedding.sql (typically after a first backup), to exercise incremental /
-- differential backups. Plain SQL only; deterministic; run exactly once.
--
-- Effect (starting from a fresh wedding.sql load):
--   guests:   500 contiguous rows updated (id 20001..20500, 1% of 50000),
--             250 rows inserted (ids 50001..50250, 0.5%),
--             10 scattered rows deleted                 -> 50240 rows
--   vendors:  5 scattered rows updated (ids 7, 733, 1500, 2222, 2999) -> 3000 rows
--   payments: 3 rows deleted (ids 101, 20202, 39999)    -> 39997 rows
--   all other tables unchanged.

-- 1% of the largest table, contiguous by primary key.
UPDATE guests
SET rsvp = (enum_range(NULL::rsvp_status))[1 + ('x' || substr(md5('rsvp2:' || id), 1, 7))::bit(28)::integer % 4],
    party_size = party_size + 1,
    notes = 'RSVP updated online (ref ' || substr(md5('change:' || id), 1, 8) || ')',
    details = details || jsonb_build_object('rsvp_source', 'website', 'rsvp_round', 2),
    updated_at = timestamptz '2025-02-01 12:00:00+00' + (id - 20001) * interval '1 minute'
WHERE id BETWEEN 20001 AND 20500;

-- A handful of scattered rows in another table.
UPDATE vendors
SET rating = CASE WHEN rating IS NULL THEN 4.5 ELSE LEAST(rating + 0.3, 5.0) END,
    price_list = price_list || jsonb_build_object('base', (price_list ->> 'base')::integer + 250,
                                                 'updated', '2025-02-01'),
    services = services || ARRAY['late-night extension']
WHERE id IN (7, 733, 1500, 2222, 2999);

-- New guests (0.5% of the table); identity assigns ids 50001..50250.
INSERT INTO guests (couple_id, first_name, last_name, email, phone, rsvp, party_size, table_number,
                    dietary, seat_neighbours, details, notes, updated_at)
SELECT 1 + ((i - 1) * 8) % 2000,
       (ARRAY['Maya','Theo','Sofia','Felix','Iris','Oscar','Lena','Hugo'])[1 + i % 8],
       (ARRAY['Bauer','Costa','Novak','Silva','Berg','Moreau','Ito','Quinn'])[1 + (i / 8) % 8],
       'late.guest' || i || '@mail.example.org',
       '+1-415-555-' || lpad(i::text, 4, '0'),
       'invited',
       1,
       NULL,
       CASE WHEN i % 5 = 0 THEN ARRAY['vegetarian'] ELSE '{}'::text[] END,
       '{}',
       jsonb_build_object('side', 'partner1', 'relation', 'friend', 'added_late', true),
       'Added after save-the-dates (' || substr(md5('late:' || i), 1, 6) || ')',
       timestamptz '2025-02-02 09:00:00+00' + i * interval '1 minute'
FROM generate_series(1, 250) AS s(i)
ORDER BY i;

-- A few deletions.
DELETE FROM guests WHERE id IN (3, 4999, 12345, 17777, 25001, 31415, 38000, 42424, 47000, 49999);
DELETE FROM payments WHERE id IN (101, 20202, 39999);
