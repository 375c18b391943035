-- The catalog: products (the whole document as JSON), their variants (one row per SKU, so a
-- SKU is unique across the catalog) and every version a product ever had.

CREATE TABLE products (
    id             text        PRIMARY KEY,
    handle         text        NOT NULL UNIQUE,
    status         text        NOT NULL CHECK (status IN ('draft', 'active', 'discontinued')),
    version        integer     NOT NULL CHECK (version >= 1),
    vendor         text,
    product_type   text,
    tags           text[]      NOT NULL DEFAULT '{}',
    document       jsonb       NOT NULL,
    content_digest text        NOT NULL,
    search         tsvector    GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(document ->> 'title', '')), 'A')
        || setweight(to_tsvector('english', coalesce(vendor, '') || ' '
                                 || coalesce(product_type, '')), 'B')
        || setweight(to_tsvector('english', regexp_replace(
               coalesce(document ->> 'description', ''), '<[^>]*>', ' ', 'g')), 'C')
    ) STORED,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL
);
CREATE INDEX products_status ON products (status, id);
CREATE INDEX products_vendor ON products (vendor, id);
CREATE INDEX products_type ON products (product_type, id);
CREATE INDEX products_tags ON products USING gin (tags);
CREATE INDEX products_search ON products USING gin (search);

CREATE TABLE variants (
    sku            text        PRIMARY KEY,
    product_id     text        NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    position       integer     NOT NULL,
    barcode        text,
    is_bundle      boolean     NOT NULL DEFAULT false,
    component_skus text[]      NOT NULL DEFAULT '{}'
);
CREATE INDEX variants_product ON variants (product_id, position);
CREATE INDEX variants_barcode ON variants (barcode) WHERE barcode IS NOT NULL;
-- text_pattern_ops lets `sku LIKE 'ABC%'` use the index whatever the collation.
CREATE INDEX variants_sku_prefix ON variants (sku text_pattern_ops);
CREATE INDEX variants_bundles ON variants (sku) WHERE is_bundle;
CREATE INDEX variants_components ON variants USING gin (component_skus);

-- One row per version: what the product was, when and why it changed.
CREATE TABLE product_history (
    product_id     text        NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    version        integer     NOT NULL,
    document       jsonb       NOT NULL,
    cause          text        NOT NULL,
    request_key    text,
    changed_at     timestamptz NOT NULL,
    PRIMARY KEY (product_id, version)
);
