-- A run's cost in USD, stored by the transaction that finalizes it (so a
-- list of runs shows it without reading each run's events); NULL while the
-- run is open, cleared when a retry reopens it.
ALTER TABLE runs ADD COLUMN cost_usd DOUBLE PRECISION;
