-- Fulfillment: shipments and their steps, pick lists, packages, labels, tracking, returns (RMA),
-- bin assignments and what fulfillment knows of orders and catalog variants.
-- Aggregates keep their whole state in `state` (the domain's to_dict); the other columns are
-- copies for querying, written in the same statement.

-- What fulfillment learned of an order from order.confirmed.v1: where to ship, line prices.
CREATE TABLE orders (
    order_id      text PRIMARY KEY,
    currency      text        NOT NULL,
    ship_to       jsonb       NOT NULL,
    lines         jsonb       NOT NULL,  -- line_id -> {sku, unit_price}
    status        text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'cancelled')),
    confirmed_at  timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pick_lists (
    pick_list_id  text PRIMARY KEY,
    location      text        NOT NULL,
    status        text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'confirmed')),
    state         jsonb       NOT NULL,
    found         jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    confirmed_at  timestamptz
);
CREATE INDEX pick_lists_open ON pick_lists (location, created_at) WHERE status = 'open';

CREATE TABLE shipments (
    shipment_id     text PRIMARY KEY,
    order_id        text        NOT NULL REFERENCES orders (order_id),
    sequence        integer     NOT NULL,
    location        text        NOT NULL,
    status          text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    pick_list_id    text REFERENCES pick_lists (pick_list_id),
    tracking_number text UNIQUE,
    carrier         text,
    shipped_at      timestamptz,
    state           jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, sequence)
);
CREATE INDEX shipments_work ON shipments (location, status, created_at);
CREATE INDEX shipments_order ON shipments (order_id);

CREATE TABLE shipment_lines (
    shipment_id  text    NOT NULL REFERENCES shipments (shipment_id) ON DELETE CASCADE,
    line_id      text    NOT NULL,
    sku          text    NOT NULL,
    quantity     integer NOT NULL CHECK (quantity > 0),
    picked       integer CHECK (picked >= 0),
    PRIMARY KEY (shipment_id, line_id)
);
CREATE INDEX shipment_lines_sku ON shipment_lines (sku);

CREATE TABLE packages (
    shipment_id   text    NOT NULL REFERENCES shipments (shipment_id) ON DELETE CASCADE,
    package_no    integer NOT NULL,
    weight_grams  integer NOT NULL CHECK (weight_grams > 0),
    length_mm     integer NOT NULL CHECK (length_mm > 0),
    width_mm      integer NOT NULL CHECK (width_mm > 0),
    height_mm     integer NOT NULL CHECK (height_mm > 0),
    PRIMARY KEY (shipment_id, package_no)
);

CREATE TABLE labels (
    shipment_id     text PRIMARY KEY REFERENCES shipments (shipment_id) ON DELETE CASCADE,
    carrier         text        NOT NULL,
    tracking_number text        NOT NULL UNIQUE,
    service_level   text        NOT NULL,
    media_type      text        NOT NULL,
    document        bytea       NOT NULL,
    rate_amount     numeric,
    rate_currency   text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Every carrier scan as received, applied or not (duplicates and stale scans are kept too).
CREATE TABLE tracking_events (
    id               bigserial PRIMARY KEY,
    tracking_number  text        NOT NULL,
    shipment_id      text        NOT NULL REFERENCES shipments (shipment_id) ON DELETE CASCADE,
    status           text        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    detail           text        NOT NULL DEFAULT '',
    applied          boolean     NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tracking_events_shipment ON tracking_events (shipment_id, id);

CREATE TABLE returns (
    rma_id      text PRIMARY KEY,
    order_id    text        NOT NULL REFERENCES orders (order_id),
    status      text        NOT NULL,
    location    text,
    version     integer     NOT NULL DEFAULT 1,
    state       jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX returns_order ON returns (order_id);

-- Where a sku lives in a location; sku '*' is the location's default bin (sku codes never
-- contain '*'). No row at all: the pick list says the bin is unknown.
CREATE TABLE bins (
    location    text        NOT NULL,
    sku         text        NOT NULL,
    bin         text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (location, sku)
);

-- Packing defaults from catalog.products.v1, newest catalog version wins.
CREATE TABLE variants (
    sku              text PRIMARY KEY,
    weight_grams     integer,
    length_mm        integer,
    width_mm         integer,
    height_mm        integer,
    catalog_version  integer     NOT NULL,
    removed          boolean     NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Serials of stockflow-post tracking numbers (UPU S10 has 8 digits; serials cycle after that,
-- as postal operators' do).
CREATE SEQUENCE tracking_serials MINVALUE 1 MAXVALUE 99999999 CYCLE;
