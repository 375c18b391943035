-- The bins of a location (where pickers find units); a location may have none (a store floor).
ALTER TABLE locations ADD COLUMN bins text[] NOT NULL DEFAULT '{}';
