-- keepsake benchmark: the "realistic change" applied between the full and the incremental
-- backup. Deterministic; run exactly once after the load.
-- psql variables: n_guests (rows = highest id of guests), n_vendors.
--   guests:  1% contiguous rows updated (ids n/2+1 .. n/2+n/100)
--            0.5% rows inserted (ids n+1 .. n+n/200)
--            10 scattered rows deleted
--   vendors: 5 scattered rows updated

UPDATE guests
SET rsvp = (enum_range(NULL::rsvp_status))[1 + ('x' || substr(md5('rsvp2:' || id), 1, 7))::bit(28)::integer % 4],
    party_size = party_size + 1,
    notes = 'RSVP updated online (ref ' || substr(md5('change:' || id), 1, 8) || ')',
    details = details || jsonb_build_object('rsvp_source', 'website', 'rsvp_round', 2),
    updated_at = timestamptz '2025-02-01 12:00:00+00' + (id % 100000) * interval '1 minute'
WHERE id BETWEEN (:n_guests / 2) + 1 AND (:n_guests / 2) + (:n_guests / 100);

UPDATE vendors
SET rating = CASE WHEN rating IS NULL THEN 4.5 ELSE LEAST(rating + 0.3, 5.0) END,
    price_list = price_list || jsonb_build_object('base', (price_list ->> 'base')::integer + 250,
                                                 'updated', '2025-02-01'),
    services = services || ARRAY['late-night extension']
WHERE id IN (1 + :n_vendors / 7, 1 + 2 * :n_vendors / 7, 1 + 3 * :n_vendors / 7,
             1 + 5 * :n_vendors / 7, :n_vendors);

INSERT INTO guests (id, couple_id, first_name, last_name, email, phone, rsvp, party_size,
                    table_number, dietary, details, notes, invited_at, updated_at)
SELECT :n_guests + i,
       1 + (i * 7) % (SELECT count(*) FROM couples),
       (ARRAY['Maya','Theo','Sofia','Felix','Iris','Oscar','Lena','Hugo'])[1 + i % 8],
       (ARRAY['Bauer','Costa','Novak','Silva','Berg','Moreau','Ito','Quinn'])[1 + (i / 8) % 8],
       'late.guest' || i || '@mail.example.org',
       '+1-415-555-' || lpad((i % 10000)::text, 4, '0'),
       'invited',
       1,
       NULL,
       CASE WHEN i % 5 = 0 THEN ARRAY['vegetarian'] ELSE '{}'::text[] END,
       jsonb_build_object('side', 'partner1', 'relation', 'friend', 'added_late', true),
       'Added after save-the-dates (' || substr(md5('late:' || i), 1, 6) || ')',
       timestamptz '2025-02-02 09:00:00+00' + i * interval '1 minute',
       timestamptz '2025-02-02 09:00:00+00' + i * interval '1 minute'
FROM generate_series(1, GREATEST(:n_guests / 200, 1)) AS s(i)
ORDER BY i;

DELETE FROM guests
WHERE id IN (SELECT 1 + k * (:n_guests / 11) FROM generate_series(1, 10) AS g(k));
