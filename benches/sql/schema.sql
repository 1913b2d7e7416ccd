-- keepsake benchmark: types shared by the tables (the tables themselves are created by the
-- load scripts, in the same transaction as their data, so wal_level=minimal can skip WAL).
CREATE TYPE rsvp_status AS ENUM ('invited', 'attending', 'declined', 'maybe');
CREATE TYPE vendor_category AS ENUM
    ('venue', 'catering', 'photography', 'florist', 'music', 'cake', 'attire', 'transport', 'planner');
