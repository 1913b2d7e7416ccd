-- keepsake benchmark: couples, vendors, payments and photos (the other half of the data).
-- psql variables: n_couples, n_vendors, n_payments, n_photos. Run after prelude.sql.

BEGIN;
CREATE TABLE couples (
    id            integer NOT NULL,
    partner1      text NOT NULL,
    partner2      text NOT NULL,
    email         text NOT NULL,
    wedding_date  date NOT NULL,
    city          text NOT NULL,
    budget        numeric(12,2) NOT NULL,
    tags          text[] NOT NULL,
    preferences   jsonb NOT NULL,
    created_at    timestamptz NOT NULL
);
INSERT INTO couples
SELECT i,
       pg_temp.first_name(i) || ' ' || pg_temp.last_name(i),
       pg_temp.first_name(i + 1000003) || ' ' || pg_temp.last_name(i + 1000003),
       'couple' || i || '.' || substr(md5('ce:' || i), 1, 6) || '@mail.example.com',
       date '2024-04-01' + pg_temp.h('wd', i) % 900,
       pg_temp.city(i),
       (5000 + pg_temp.h('bud', i) % 95000)::numeric + (pg_temp.h('bud2', i) % 100) / 100.0,
       CASE pg_temp.h('tag', i) % 4 WHEN 0 THEN ARRAY['outdoor','summer'] WHEN 1 THEN ARRAY['destination']
            WHEN 2 THEN ARRAY['small','city hall'] ELSE ARRAY['church','traditional','big family'] END,
       jsonb_build_object('theme', pg_temp.pick(ARRAY['rustic','boho','classic','modern','beach','garden'], 'th', i),
                          'colors', jsonb_build_array(pg_temp.pick(ARRAY['sage','blush','navy','gold','ivory','terracotta'], 'c1', i),
                                                      pg_temp.pick(ARRAY['white','champagne','dusty blue','burgundy'], 'c2', i)),
                          'guest_estimate', 40 + pg_temp.h('ge', i) % 260,
                          'newsletter', pg_temp.h('nl', i) % 2 = 0),
       pg_temp.ts('cc', i)
FROM generate_series(1, :n_couples) AS s(i);
COMMIT;

BEGIN;
CREATE TABLE vendors (
    id          integer NOT NULL,
    name        text NOT NULL,
    category    vendor_category NOT NULL,
    email       text NOT NULL,
    phone       text NOT NULL,
    city        text NOT NULL,
    rating      numeric(2,1),
    services    text[] NOT NULL,
    price_list  jsonb NOT NULL,
    description text
);
INSERT INTO vendors
SELECT i,
       pg_temp.pick(ARRAY['Golden','Silver','Bloom','Evergreen','Harbor','Velvet','Sunset','Willow','Lumen','Cedar'], 'vn1', i)
         || ' ' || pg_temp.pick(ARRAY['Studio','Events','Collective','& Co','House','Works','Atelier'], 'vn2', i) || ' ' || i,
       (enum_range(NULL::vendor_category))[1 + pg_temp.h('cat', i) % 9],
       'hello@vendor' || i || '.example.com',
       '+1-' || (200 + pg_temp.h('vp', i) % 800) || '-555-' || lpad((pg_temp.h('vp2', i) % 10000)::text, 4, '0'),
       pg_temp.city(i),
       CASE WHEN pg_temp.h('rt', i) % 5 = 0 THEN NULL ELSE (30 + pg_temp.h('rt2', i) % 21) / 10.0 END,
       ARRAY[pg_temp.pick(ARRAY['consultation','delivery','setup','teardown','travel'], 's1', i),
             pg_temp.pick(ARRAY['weekend rate','package deal','custom work','rush orders'], 's2', i)],
       jsonb_build_object('currency', 'USD', 'base', 500 + pg_temp.h('pb', i) % 9500,
                          'per_guest', pg_temp.h('pg', i) % 120, 'deposit_pct', 10 + pg_temp.h('dp', i) % 40,
                          'packages', jsonb_build_array(
                              jsonb_build_object('name', 'basic', 'price', 400 + pg_temp.h('p1', i) % 2000),
                              jsonb_build_object('name', 'premium', 'price', 2500 + pg_temp.h('p2', i) % 8000))),
       'Family-run ' || pg_temp.pick(ARRAY['venue','caterer','studio','florist','band','bakery','boutique','limo service','planner'], 'vd', i)
         || ' serving ' || pg_temp.city(i + 7) || ' since ' || (1980 + pg_temp.h('vy', i) % 44)
         || '. ' || md5('vdesc:' || i)
FROM generate_series(1, :n_vendors) AS s(i);
COMMIT;

BEGIN;
CREATE TABLE payments (
    id           bigint NOT NULL,
    couple_id    integer NOT NULL,
    vendor_id    integer NOT NULL,
    amount       numeric(10,2) NOT NULL CHECK (amount > 0),
    currency     char(3) NOT NULL,
    method       text NOT NULL,
    status       text NOT NULL,
    paid_at      timestamptz NOT NULL,
    invoice_ref  text NOT NULL,
    memo         text
);
INSERT INTO payments
SELECT i,
       1 + pg_temp.h('pc', i) % :n_couples,
       1 + pg_temp.h('pv', i) % :n_vendors,
       (20 + pg_temp.h('am', i) % 5000)::numeric + (pg_temp.h('am2', i) % 100) / 100.0,
       pg_temp.pick(ARRAY['USD','USD','USD','EUR','GBP','CAD'], 'cur', i),
       pg_temp.pick(ARRAY['card','bank transfer','check','cash','paypal'], 'pm', i),
       pg_temp.pick(ARRAY['paid','paid','paid','pending','refunded'], 'pst', i),
       pg_temp.ts('pa', i),
       'INV-' || upper(substr(md5('inv:' || i), 1, 10)),
       CASE WHEN pg_temp.h('mm', i) % 3 = 0
            THEN pg_temp.pick(ARRAY['deposit','second instalment','final balance','tip','overtime'], 'mm1', i)
       END
FROM generate_series(1, :n_payments) AS s(i);
COMMIT;

BEGIN;
CREATE TABLE photos (
    id           bigint NOT NULL,
    couple_id    integer NOT NULL,
    album        text NOT NULL,
    filename     text NOT NULL,
    mime_type    text NOT NULL,
    width        integer NOT NULL,
    height       integer NOT NULL,
    file_bytes   bigint NOT NULL,
    taken_at     timestamptz NOT NULL,
    exif         jsonb NOT NULL,
    caption      text,
    tags         text[] NOT NULL,
    sha256       bytea NOT NULL,
    thumbnail    bytea NOT NULL   -- incompressible, like real JPEG thumbnails
);
INSERT INTO photos
SELECT i,
       1 + pg_temp.h('phc', i) % :n_couples,
       pg_temp.pick(ARRAY['engagement','getting ready','ceremony','portraits','reception','guests'], 'alb', i),
       'IMG_' || lpad((i % 100000)::text, 5, '0') || '_' || substr(md5('fn:' || i), 1, 6) || '.jpg',
       'image/jpeg',
       w, (w * 2) / 3,
       800000 + pg_temp.h('fb', i) % 9000000,
       pg_temp.ts('tk', i),
       jsonb_build_object('camera', pg_temp.pick(ARRAY['Canon EOS R5','Nikon Z7 II','Sony A7 IV','Fujifilm X-T5','iPhone 15 Pro'], 'cam', i),
                          'lens', pg_temp.pick(ARRAY['24-70mm f/2.8','85mm f/1.4','35mm f/1.8','70-200mm f/2.8'], 'lens', i),
                          'iso', (ARRAY[100,200,400,800,1600,3200])[1 + pg_temp.h('iso', i) % 6],
                          'aperture', (ARRAY[1.4,1.8,2.8,4,5.6,8])[1 + pg_temp.h('ap', i) % 6],
                          'shutter', '1/' || (ARRAY[60,125,250,500,1000])[1 + pg_temp.h('sh', i) % 5],
                          'gps', jsonb_build_object('lat', round((25 + (pg_temp.h('lat', i) % 2300000) / 100000.0)::numeric, 5),
                                                    'lon', round((-70 - (pg_temp.h('lon', i) % 5000000) / 100000.0)::numeric, 5))),
       CASE WHEN pg_temp.h('cap', i) % 4 <> 0
            THEN pg_temp.pick(ARRAY['First look','The vows','Cutting the cake','First dance','Golden hour portraits',
                                    'Confetti exit','Toast from the best man','Table details'], 'cap1', i) || ' #' || i
       END,
       ARRAY[pg_temp.pick(ARRAY['favourite','print','album','social','family'], 'pt1', i)],
       sha256(convert_to('photo:' || i, 'UTF8')),
       substring(sha512(convert_to('t1:' || i, 'UTF8')) || sha512(convert_to('t2:' || i, 'UTF8'))
              || sha512(convert_to('t3:' || i, 'UTF8')) || sha512(convert_to('t4:' || i, 'UTF8'))
              || sha512(convert_to('t5:' || i, 'UTF8')) || sha512(convert_to('t6:' || i, 'UTF8'))
              || sha512(convert_to('t7:' || i, 'UTF8')) || sha512(convert_to('t8:' || i, 'UTF8'))
              FROM 1 FOR 256 + pg_temp.h('tl', i) % 256)
FROM generate_series(1, :n_photos) AS s(i),
     LATERAL (SELECT (ARRAY[4000, 6000, 8192])[1 + pg_temp.h('w', i) % 3] AS w) AS dims;
COMMIT;
