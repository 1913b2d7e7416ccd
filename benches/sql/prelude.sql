-- keepsake benchmark: deterministic helpers, created in pg_temp (per session, never dumped).
-- Every value of the generated data derives from md5/sha512 of the row number: no random(),
-- no now(), so the same scale always yields the same database.

-- Integer in [0, 2^28) from (salt, n).
CREATE FUNCTION pg_temp.h(salt text, n bigint) RETURNS integer
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT ('x' || substr(md5(salt || ':' || n), 1, 7))::bit(28)::integer $$;

-- One element of arr, chosen by (salt, n).
CREATE FUNCTION pg_temp.pick(arr text[], salt text, n bigint) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT arr[1 + pg_temp.h(salt, n) % cardinality(arr)] $$;

CREATE FUNCTION pg_temp.first_name(n bigint) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT pg_temp.pick(ARRAY['Olivia','Liam','Emma','Noah','Amelia','Oliver','Ava','Elijah',
        'Sophia','Lucas','Isabella','Mateo','Mia','Levi','Charlotte','Asher','Harper','James',
        'Evelyn','Leo','Luna','Henry','Camila','Ethan','Aria','Jack','Ella','Sebastian','Nora',
        'Aiden','Hazel','Daniel','Chloe','Samuel','Layla','Julian','Zoe','Owen','Priya','Kenji',
        'Fatima','Diego','Ingrid','Tomasz','Aisha','Jonas','Mei','Rafael'], 'fn', n) $$;

CREATE FUNCTION pg_temp.last_name(n bigint) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT pg_temp.pick(ARRAY['Smith','Johnson','Williams','Brown','Jones','Garcia','Miller',
        'Davis','Rodriguez','Martinez','Hernandez','Lopez','Gonzalez','Wilson','Anderson','Thomas',
        'Taylor','Moore','Jackson','Martin','Lee','Perez','Thompson','White','Harris','Sanchez',
        'Clark','Ramirez','Lewis','Robinson','Walker','Young','Allen','King','Wright','Scott',
        'Nguyen','Hill','Flores','Green','Schmidt','Kowalski','Tanaka','Okafor','Patel','Larsen',
        'Rossi','Dubois'], 'ln', n) $$;

CREATE FUNCTION pg_temp.city(n bigint) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT pg_temp.pick(ARRAY['Austin','Boston','Chicago','Denver','Seattle','Portland',
        'Nashville','Savannah','San Diego','Charleston','Asheville','Santa Fe','Napa','Sedona',
        'Burlington','Madison'], 'city', n) $$;

-- A timestamp in 2023-2025 from (salt, n).
CREATE FUNCTION pg_temp.ts(salt text, n bigint) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT timestamptz '2023-01-01 00:00:00+00'
                 + (pg_temp.h(salt, n) % 94608000) * interval '1 second' $$;
