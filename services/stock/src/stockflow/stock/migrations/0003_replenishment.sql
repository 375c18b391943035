-- Replenishment: demand per (sku, location, day), per-SKU replenishment settings and a record
-- of replenishment runs.

-- Demand is recorded where it was served (each allocation's location); unserved demand
-- (backordered or rejected) where a backorder of the sku waits: its first location by code,
-- else the first location by shipping priority. Rows from before this migration go to the
-- first location by priority ('DEFAULT' when none exists yet).
ALTER TABLE demand_daily ADD COLUMN location text;
UPDATE demand_daily SET location = coalesce(
    (SELECT code FROM locations ORDER BY priority, code LIMIT 1), 'DEFAULT');
ALTER TABLE demand_daily ALTER COLUMN location SET NOT NULL;
ALTER TABLE demand_daily DROP CONSTRAINT demand_daily_pkey;
ALTER TABLE demand_daily ADD PRIMARY KEY (sku, location, day);
CREATE INDEX demand_daily_day ON demand_daily (day);

-- Replenishment parameters per sku (location '*') or per (sku, location). A NULL column falls
-- back to the sku's '*' row, then to the service's STOCKFLOW_REPLENISH_* defaults.
CREATE TABLE replenishment_settings (
    sku                text    NOT NULL,
    location           text    NOT NULL DEFAULT '*',
    lead_time_days     numeric CHECK (lead_time_days > 0),
    lead_time_std_days numeric CHECK (lead_time_std_days >= 0),
    unit_cost          numeric CHECK (unit_cost > 0),
    ordering_cost      numeric CHECK (ordering_cost >= 0),
    holding_cost_rate  numeric CHECK (holding_cost_rate > 0),  -- of unit cost, per year
    pack_size          integer CHECK (pack_size >= 1),
    min_order_qty      integer CHECK (min_order_qty >= 0),
    service_level      numeric CHECK (service_level >= 0.5 AND service_level < 1),
    service_level_type text    CHECK (service_level_type IN ('cycle', 'fill_rate')),
    method             text    CHECK (method IN ('eoq', 'minmax')),
    order_cycle_days   numeric CHECK (order_cycle_days > 0),  -- min/max: max = rop + this demand
    max_cover_days     numeric CHECK (max_cover_days > 0),    -- eoq, intermittent: lot cap
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, location)
);

-- One row per finished run: the scheduler runs only when the last scheduled run is older than
-- its interval, so several instances (and restarts) do not repeat it.
CREATE TABLE replenishment_runs (
    id                   bigserial PRIMARY KEY,
    trigger              text        NOT NULL CHECK (trigger IN ('schedule', 'cli')),
    started_at           timestamptz NOT NULL,
    finished_at          timestamptz NOT NULL DEFAULT now(),
    series               integer     NOT NULL,
    suggestions          integer     NOT NULL,
    published            boolean     NOT NULL,
    reorder_points_set   integer     NOT NULL
);
