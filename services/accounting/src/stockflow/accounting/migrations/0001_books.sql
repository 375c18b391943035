-- The accounting service's books: journal, valuation, what returns and revenue need, periods.

-- The journal. entry_id is a UUID5 of (cause, rule, subject), so a replayed event rebuilds the
-- same id and the primary key refuses it; seq orders entries for paging and the ERP feed.
CREATE TABLE journal_entries (
    entry_id    uuid        PRIMARY KEY,
    seq         bigserial   NOT NULL UNIQUE,
    posted_at   timestamptz NOT NULL,
    period      text        NOT NULL CHECK (period ~ '^\d{4}-(0[1-9]|1[0-2])$'),
    cause_type  text        NOT NULL,
    cause_id    text        NOT NULL,
    currency    char(3)     NOT NULL,
    note        text,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX journal_entries_period ON journal_entries (period, seq);
CREATE INDEX journal_entries_posted_at ON journal_entries (posted_at);
CREATE INDEX journal_entries_cause ON journal_entries (cause_id);

CREATE TABLE journal_lines (
    entry_id uuid    NOT NULL REFERENCES journal_entries (entry_id),
    line_no  integer NOT NULL,
    account  text    NOT NULL,
    debit    numeric NOT NULL CHECK (debit >= 0),
    credit   numeric NOT NULL CHECK (credit >= 0),
    sku      text,
    order_id text,
    PRIMARY KEY (entry_id, line_no),
    CHECK (debit = 0 OR credit = 0)
);
CREATE INDEX journal_lines_sku ON journal_lines (sku, account) WHERE sku IS NOT NULL;
CREATE INDEX journal_lines_order ON journal_lines (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX journal_lines_account ON journal_lines (account);

-- Valuation per SKU: the domain's SkuValuation as JSON (open layers, last unit cost), with
-- quantity and value copied out for reports. version grows with every change.
CREATE TABLE valuations (
    sku        text        PRIMARY KEY,
    currency   char(3)     NOT NULL,
    method     text        NOT NULL CHECK (method IN ('fifo', 'moving_average')),
    state      jsonb       NOT NULL,
    quantity   integer     NOT NULL,
    value      numeric     NOT NULL,
    version    bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The cost method chosen per SKU (FIFO when absent).
CREATE TABLE sku_cost_methods (
    sku        text        PRIMARY KEY,
    method     text        NOT NULL CHECK (method IN ('fifo', 'moving_average')),
    changed_at timestamptz NOT NULL DEFAULT now()
);

-- Stock movements already valued, by the stock ledger's own id: a movement re-sent under a
-- new event id (or read by a new consumer group) is still applied once.
CREATE TABLE applied_movements (
    movement_id text        PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- What each shipment of an order's SKU cost and how much of it has not come back yet:
-- returns are valued at prorate(cost_left, returned, quantity_left), oldest shipment first.
CREATE TABLE shipment_costs (
    movement_id   text    PRIMARY KEY,
    seq           bigserial NOT NULL,
    order_id      text    NOT NULL,
    sku           text    NOT NULL,
    currency      char(3) NOT NULL,
    quantity      integer NOT NULL CHECK (quantity > 0),
    cost          numeric NOT NULL,
    quantity_left integer NOT NULL CHECK (quantity_left >= 0),
    cost_left     numeric NOT NULL CHECK (cost_left >= 0)
);
CREATE INDEX shipment_costs_order_sku ON shipment_costs (order_id, sku, seq);

-- Unit prices per order line, learned from order.accepted / order.confirmed.
CREATE TABLE order_prices (
    order_id   text    NOT NULL,
    line_id    text    NOT NULL,
    sku        text    NOT NULL,
    unit_price numeric NOT NULL,
    currency   char(3) NOT NULL,
    PRIMARY KEY (order_id, line_id)
);

-- Postings waiting for something another topic brings (prices, a shipment's cost).
CREATE TABLE pending_postings (
    cause_id    text        NOT NULL,
    rule        text        NOT NULL,
    cause_type  text        NOT NULL,
    order_id    text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload     jsonb       NOT NULL,
    waiting_for text        NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cause_id, rule)
);
CREATE INDEX pending_postings_order ON pending_postings (order_id);

-- Closed periods take no postings.
CREATE TABLE periods (
    period    text        PRIMARY KEY CHECK (period ~ '^\d{4}-(0[1-9]|1[0-2])$'),
    closed_at timestamptz NOT NULL DEFAULT now()
);
