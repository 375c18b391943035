-- Business facts are applied once per business key, whatever event id or HTTP request brings
-- them again: a receipt per receipt_id, a return per RMA line, a cycle count per count id.
-- `says` is what the fact said the first time (a repeat must say the same, else it is refused);
-- `result` is what was answered then, so a repeat gets the same answer.
CREATE TABLE applied_facts (
    kind           text        NOT NULL CHECK (kind IN ('receipt', 'return_line', 'count')),
    key            text        NOT NULL,
    says           jsonb       NOT NULL,
    result         jsonb       NOT NULL DEFAULT '{}',
    cause_event_id text        NOT NULL,
    applied_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);

-- Receipts applied before this migration keep their key (the first one, if a retry counted twice).
INSERT INTO applied_facts (kind, key, says, result, cause_event_id, applied_at)
SELECT DISTINCT ON (reference_id) 'receipt', reference_id,
       jsonb_build_object('sku', sku, 'location', location, 'quantity', quantity,
                          'unit_cost', trim_scale(unit_cost)::text, 'currency', currency),
       jsonb_build_object('receipt_id', reference_id), cause_event_id, occurred_at
FROM movements
WHERE kind = 'receipt' AND reference_type = 'receipt' AND reference_id IS NOT NULL
ORDER BY reference_id, id;

-- A preorder variant is sold as a backorder until this date (from catalog.products.v1).
ALTER TABLE skus ADD COLUMN preorder_available_at timestamptz;

-- Announced receipts now raise `incoming` through the ledger (`incoming_announced`); the ones
-- still due when this runs get their movement and their level's incoming here.
INSERT INTO movements (movement_id, sku, location, kind, quantity, reference_type, reference_id,
                       cause_event_id)
SELECT gen_random_uuid(), sku, location, 'incoming_announced', quantity, 'receipt',
       substr(reference, length('receipt:') + 1), 'migration:0007_business_keys'
FROM incoming WHERE NOT arrived AND reference LIKE 'receipt:%';

INSERT INTO levels (sku, location, incoming, version)
SELECT sku, location, sum(quantity), 1
FROM incoming WHERE NOT arrived AND reference LIKE 'receipt:%'
GROUP BY sku, location
ON CONFLICT (sku, location) DO UPDATE
    SET incoming = levels.incoming + EXCLUDED.incoming, version = levels.version + 1;
