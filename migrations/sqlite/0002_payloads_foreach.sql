-- Outputs too large to be inline: the row keeps a reference ({"url", "size", "sha256"}).
ALTER TABLE tasks ADD COLUMN output_ref TEXT;
-- The item of a `foreach` instance (its index is task_index).
ALTER TABLE tasks ADD COLUMN item TEXT;
