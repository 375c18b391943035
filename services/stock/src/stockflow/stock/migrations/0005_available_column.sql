-- `available` is defined once, here: every reader selects the column instead of repeating the
-- formula. The domain's `Level.available` mirrors it (tests/test_available.py checks both agree).
ALTER TABLE levels ADD COLUMN available integer
    GENERATED ALWAYS AS (on_hand - reserved - damaged - quality_control - safety_stock) STORED;
ALTER TABLE levels DROP CONSTRAINT levels_available_never_negative;
ALTER TABLE levels ADD CONSTRAINT levels_available_never_negative CHECK (available >= 0);
