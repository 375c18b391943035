-- When each backordered line is expected, as stock last said: from its reservation reply
-- (stock.reserved.v1, per line), then moved by stock.backorder.eta_changed.v1. NULL: no dated
-- incoming stock covers the line. Kept beside the saga (which decides nothing on it) and shown
-- in GET /orders/{id}, order.confirmed.v1 and order.backorder.*.v1.
CREATE TABLE backorder_etas (
    order_id      text        NOT NULL,
    line_id       text        NOT NULL,
    expected_date timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, line_id)
);
