-- A bundle's components from catalog.products.v1: a bundle line is picked as them.
ALTER TABLE variants
    ADD COLUMN bundle_components jsonb NOT NULL DEFAULT '[]';  -- [{sku, quantity}]
