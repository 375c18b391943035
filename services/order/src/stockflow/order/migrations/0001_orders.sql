-- The order service's tables (schema `orders`): sagas, their timelines, timers, shipments.

-- One row per order. `saga` is the whole saga (OrderSaga.to_dict); the columns beside it are
-- what queries filter on and the order facts the saga itself does not need (customer, address).
CREATE TABLE orders (
    order_id         text        PRIMARY KEY,
    state            text        NOT NULL,
    version          integer     NOT NULL CHECK (version >= 1),
    customer_id      text,
    currency         text        NOT NULL,
    fingerprint      text        NOT NULL,
    priority         smallint,
    placed_at        timestamptz,
    shipping_address jsonb,
    saga             jsonb       NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    -- When the reservation saga ended (confirmed, rejected, cancelled, ...): the demo's latency.
    settled_at       timestamptz
);
CREATE INDEX orders_by_state ON orders (state, order_id);

-- Every input the saga heard, applied, ignored or refused, with its cause (event or timer id).
CREATE TABLE timeline (
    order_id   text        NOT NULL,
    seq        bigint      GENERATED ALWAYS AS IDENTITY,
    at         timestamptz NOT NULL,
    from_state text        NOT NULL,
    to_state   text        NOT NULL,
    cause_type text        NOT NULL,
    cause_id   text        NOT NULL,
    outcome    text        NOT NULL,
    note       text        NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- Durable timers (payment deadline, stock reply): at most one per order and kind. The firing
-- task claims due rows with FOR UPDATE SKIP LOCKED, so two instances never fire one twice.
CREATE TABLE timers (
    order_id text        NOT NULL,
    kind     text        NOT NULL,
    fire_at  timestamptz NOT NULL,
    attempt  integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, kind)
);
CREATE INDEX timers_due ON timers (fire_at);

-- What fulfillment told us about each shipment the saga accepted: carrier and tracking.
CREATE TABLE shipments (
    order_id        text        NOT NULL,
    shipment_id     text        NOT NULL,
    location        text        NOT NULL,
    carrier         text        NOT NULL,
    service_level   text        NOT NULL,
    tracking_number text        NOT NULL,
    shipped_at      timestamptz NOT NULL,
    delivered_at    timestamptz,
    PRIMARY KEY (order_id, shipment_id)
);
