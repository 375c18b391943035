-- A backordered bundle line. Its components wait as backorder rows (one per component sku, all
-- at `location`); the bundle is announced allocated in whole units only: `allocated` of
-- `quantity` bundle units have every component filled. Locking this row serialises the fills
-- of the line's components (each component's queue is locked by its own level).
CREATE TABLE bundle_backorders (
    order_id    text    NOT NULL,
    line_id     text    NOT NULL,
    sku         text    NOT NULL,          -- the bundle
    location    text    NOT NULL,          -- where every component waits and is allocated
    quantity    integer NOT NULL CHECK (quantity > 0),
    allocated   integer NOT NULL DEFAULT 0 CHECK (allocated BETWEEN 0 AND quantity),
    components  jsonb   NOT NULL,          -- [{"sku": ..., "quantity": units per bundle}]
    PRIMARY KEY (order_id, line_id)
);

-- The shipment of a bundle's component names the bundle sold, so the books can put the
-- component's cost on the bundle's margin (stock.movement.recorded.v1 `bundle_sku`).
ALTER TABLE movements ADD COLUMN bundle_sku text;
