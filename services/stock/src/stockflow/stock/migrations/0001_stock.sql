-- Stock: levels per (sku, location), the append-only movement ledger, reservations, backorders
-- and the local projection of the catalog.

CREATE TABLE locations (
    code        text PRIMARY KEY,
    name        text        NOT NULL,
    kind        text        NOT NULL DEFAULT 'warehouse' CHECK (kind IN ('warehouse', 'store')),
    priority    integer     NOT NULL DEFAULT 100,  -- lower ships first when several can
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- What stock knows of the catalog (from catalog.products.v1).
CREATE TABLE skus (
    sku               text PRIMARY KEY,
    tracked           boolean     NOT NULL DEFAULT true,
    backorderable     boolean     NOT NULL DEFAULT false,
    status            text        NOT NULL DEFAULT 'active',
    bundle_components jsonb       NOT NULL DEFAULT '[]',
    catalog_version   integer     NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE levels (
    sku             text    NOT NULL,
    location        text    NOT NULL,
    on_hand         integer NOT NULL DEFAULT 0,
    reserved        integer NOT NULL DEFAULT 0,
    damaged         integer NOT NULL DEFAULT 0,
    quality_control integer NOT NULL DEFAULT 0,
    safety_stock    integer NOT NULL DEFAULT 0,
    incoming        integer NOT NULL DEFAULT 0,
    backordered     integer NOT NULL DEFAULT 0,
    reorder_point   integer,
    alert_state     text    NOT NULL DEFAULT 'ok',
    version         bigint  NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, location),
    -- The database itself refuses an oversell, whatever the code above it does.
    CONSTRAINT levels_never_negative CHECK (
        on_hand >= 0 AND reserved >= 0 AND damaged >= 0 AND quality_control >= 0
        AND safety_stock >= 0 AND incoming >= 0 AND backordered >= 0),
    CONSTRAINT levels_available_never_negative CHECK (
        on_hand - reserved - damaged - quality_control - safety_stock >= 0)
);

-- Append-only: every change of any level is one row here.
CREATE TABLE movements (
    id             bigserial PRIMARY KEY,
    movement_id    uuid        NOT NULL UNIQUE,
    sku            text        NOT NULL,
    location       text        NOT NULL,
    kind           text        NOT NULL,
    quantity       integer     NOT NULL,
    reason         text,
    reference_type text,
    reference_id   text,
    order_id       text,
    unit_cost      numeric,
    currency       text,
    cause_event_id text        NOT NULL,
    occurred_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX movements_sku ON movements (sku, location, id);
CREATE INDEX movements_order ON movements (order_id) WHERE order_id IS NOT NULL;

CREATE FUNCTION movements_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the movement ledger is append-only';
END $$;
CREATE TRIGGER movements_append_only BEFORE UPDATE OR DELETE ON movements
    FOR EACH ROW EXECUTE FUNCTION movements_append_only();

-- One row per order that asked for a reservation; `reply` is what was answered, so a repeated
-- ReserveStock gets the same answer.
CREATE TABLE order_reservations (
    order_id    text PRIMARY KEY,
    status      text        NOT NULL,  -- held, rejected, released, committed
    reply_type  text        NOT NULL,
    reply       jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reservations (
    order_id    text    NOT NULL,
    line_id     text    NOT NULL,
    sku         text    NOT NULL,
    location    text    NOT NULL,
    quantity    integer NOT NULL CHECK (quantity >= 0),   -- still held
    committed   integer NOT NULL DEFAULT 0 CHECK (committed >= 0),
    released    integer NOT NULL DEFAULT 0 CHECK (released >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, line_id, sku, location)
);
CREATE INDEX reservations_open ON reservations (sku, location) WHERE quantity > 0;

CREATE TABLE backorders (
    id          bigserial PRIMARY KEY,
    order_id    text    NOT NULL,
    line_id     text    NOT NULL,
    sku         text    NOT NULL,
    location    text    NOT NULL,          -- where its units will be allocated
    quantity    integer NOT NULL CHECK (quantity > 0),
    open        integer NOT NULL CHECK (open >= 0),
    priority    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, line_id, sku)
);
CREATE INDEX backorders_queue ON backorders (sku, priority DESC, id) WHERE open > 0;

-- Announced incoming stock (receipts expected, transfers in transit) for backorder dates.
CREATE TABLE incoming (
    id          bigserial PRIMARY KEY,
    sku         text    NOT NULL,
    location    text    NOT NULL,
    quantity    integer NOT NULL CHECK (quantity > 0),
    expected_at timestamptz,
    reference   text    NOT NULL UNIQUE,
    arrived     boolean NOT NULL DEFAULT false
);

-- Demand as asked for (served or not), per sku and day: forecasting learns from it, and a
-- stockout day is flagged so that unserved demand is not mistaken for no demand.
CREATE TABLE demand_daily (
    sku       text    NOT NULL,
    day       date    NOT NULL,
    quantity  integer NOT NULL CHECK (quantity >= 0),
    stockout  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (sku, day)
);
