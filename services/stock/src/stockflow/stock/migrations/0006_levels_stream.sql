-- stock.levels.v1 explains every level: the version of the last stock.level.changed.v1 staged for
-- a level is kept beside it, written by the statement that writes the level (LevelBook.flush).
-- A level whose version runs ahead of it changed without a record on the stream (invariant
-- level_changes_published).
-- Levels that exist already were published keyed by sku alone, which compaction does not keep
-- per location: they stay at 0, and the service publishes each once under its new key when it
-- starts (usecases/levels_stream.py).
ALTER TABLE levels ADD COLUMN published_version bigint NOT NULL DEFAULT 0;

-- Whoever changes a bucket moves the version, so a change made outside LevelBook (stray SQL, a
-- new code path) shows as a version nobody published instead of passing unseen.
CREATE FUNCTION levels_version_moves() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.version = OLD.version
       AND (NEW.on_hand, NEW.reserved, NEW.damaged, NEW.quality_control, NEW.safety_stock,
            NEW.incoming, NEW.backordered)
           IS DISTINCT FROM (OLD.on_hand, OLD.reserved, OLD.damaged, OLD.quality_control,
                             OLD.safety_stock, OLD.incoming, OLD.backordered) THEN
        NEW.version := OLD.version + 1;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER levels_version_moves BEFORE UPDATE ON levels
    FOR EACH ROW EXECUTE FUNCTION levels_version_moves();
