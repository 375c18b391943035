-- Transfers between locations: shipped out of the source (its on_hand drops), in transit (the
-- destination's incoming grows), then received in part or in full at the destination.
CREATE TABLE transfers (
    transfer_id  text PRIMARY KEY,
    sku          text        NOT NULL,
    source       text        NOT NULL,
    destination  text        NOT NULL CHECK (destination <> source),
    quantity     integer     NOT NULL CHECK (quantity > 0),
    received     integer     NOT NULL DEFAULT 0 CHECK (received >= 0 AND received <= quantity),
    expected_at  timestamptz,
    shipped_at   timestamptz NOT NULL DEFAULT now(),
    received_at  timestamptz
);
CREATE INDEX transfers_in_transit ON transfers (destination, sku) WHERE received < quantity;

-- Incoming stock still due, by sku: what backorder expected dates are computed from.
CREATE INDEX incoming_due ON incoming (sku) WHERE NOT arrived;

-- What a cause (an event, an HTTP request) did: duplicate checks and "why did this change".
CREATE INDEX movements_cause ON movements (cause_event_id);
