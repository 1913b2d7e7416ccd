-- keepsake benchmark: keys, indexes and statistics after the parallel load.
ALTER TABLE couples  ADD PRIMARY KEY (id);
ALTER TABLE vendors  ADD PRIMARY KEY (id);
ALTER TABLE guests   ADD PRIMARY KEY (id);
ALTER TABLE payments ADD PRIMARY KEY (id);
ALTER TABLE photos   ADD PRIMARY KEY (id);
ALTER TABLE guests   ADD FOREIGN KEY (couple_id) REFERENCES couples (id);
ALTER TABLE payments ADD FOREIGN KEY (couple_id) REFERENCES couples (id);
ALTER TABLE payments ADD FOREIGN KEY (vendor_id) REFERENCES vendors (id);
ALTER TABLE photos   ADD FOREIGN KEY (couple_id) REFERENCES couples (id);
CREATE INDEX guests_couple_id_idx   ON guests (couple_id);
CREATE INDEX payments_couple_id_idx ON payments (couple_id, paid_at);
CREATE INDEX photos_couple_id_idx   ON photos (couple_id, taken_at);
VACUUM (ANALYZE);
