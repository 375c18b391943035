"""The catalog service against real Kafka and PostgreSQL: API, rules, bulk import, the topic."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import statistics
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stockflow.catalog.domain import gtin_check_digit
from stockflow.catalog.sample_data import Fault, sample_shopify_csv
from stockflow.cli.catalog import chunk_csv, idempotency_key
from stockflow.contracts import TOPICS, decode, parse
from stockflow.contracts.events.catalog import TOPIC, CatalogVariantRemoved
from stockflow.runtime.testing.plugin import ADMIN

pytestmark = pytest.mark.integration

READER = {"Authorization": "Bearer test-read"}


def uid() -> str:
    return uuid.uuid4().hex[:8]


def gtin(n: int) -> str:
    body = f"2{n:011d}"
    return body + str(gtin_check_digit(body))


def product(handle: str, skus: list[str], **fields: Any) -> dict[str, Any]:
    """A valid active product with one Size option and a variant per SKU."""
    return {
        "handle": handle,
        "title": f"Test tee {handle}",
        "description": "<p>Soft <b>organic</b> cotton.</p>",
        "vendor": fields.pop("vendor", "Test Vendor"),
        "product_type": "T-Shirt",
        "tags": ["test", "apparel"],
        "status": "active",
        "options": ["Size"],
        "variants": [
            {
                "sku": sku,
                "option_values": {"Size": f"S{i}"},
                "barcode": gtin(int(uuid.uuid4().int % 10**10)),
                "prices": [{"amount": "19.00", "currency": "USD"}],
                "weight_grams": 200,
            }
            for i, sku in enumerate(skus)
        ],
        **fields,
    }


def new_product(tag: str = "p", variants: int = 2, **fields: Any) -> dict[str, Any]:
    key = uid()
    return product(f"{tag}-{key}", [f"T{key.upper()}-{i}" for i in range(variants)], **fields)


async def drained(app, timeout_s: float = 20) -> None:
    """Wait until the relay has published everything the catalog staged."""
    deadline = time.monotonic() + timeout_s
    while await app.state.pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"):
        assert time.monotonic() < deadline, "the outbox did not drain"
        await asyncio.sleep(0.05)


class Topic:
    """catalog.products.v1 from where it stood when created: the latest event per sku.

    (`read_topic` reads from the very start until a count; this topic is shared by every run, so
    reading from the offsets at the start of a test up to the end offsets is exact and quick.)
    """

    def __init__(self, infra) -> None:
        self.bootstrap = infra.kafka_bootstrap
        self.start: dict[TopicPartition, int] = {}

    async def _consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        await consumer.start()
        return consumer

    async def __aenter__(self) -> Topic:
        consumer = await self._consumer()
        try:
            parts = [TopicPartition(TOPIC, p) for p in range(TOPICS[TOPIC].partitions)]
            self.start = await consumer.end_offsets(parts)
        finally:
            await consumer.stop()
        return self

    async def __aexit__(self, *exc) -> None:
        return None

    async def records(self) -> list:
        """Every record published since the start, in partition order."""
        consumer = await self._consumer()
        try:
            consumer.assign(list(self.start))
            ends = await consumer.end_offsets(list(self.start))
            for tp, offset in self.start.items():
                consumer.seek(tp, offset)
            records: list = []
            pending = {tp for tp in ends if ends[tp] > self.start[tp]}
            while pending:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, partition_records in batch.items():
                    records.extend(partition_records)
                    if partition_records and partition_records[-1].offset >= ends[tp] - 1:
                        pending.discard(tp)
            return records
        finally:
            await consumer.stop()

    async def latest(self, skus: set[str] | None = None) -> dict[str, Any]:
        """sku -> the last event about it (CatalogVariantUpserted or CatalogVariantRemoved)."""
        state: dict[str, Any] = {}
        for record in await self.records():
            event = parse(decode(record.value, record.headers))
            if skus is None or event.sku in skus:
                state[event.sku] = event
        return state


def skus_of(body: dict[str, Any]) -> list[str]:
    return [v["sku"] for v in body["variants"]]


# --- rules and error codes -----------------------------------------------------------------


def _with_variant(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**body, "variants": [{**body["variants"][0], **changes}, *body["variants"][1:]]}


RULES = {
    "handle": (lambda b: {**b, "handle": "Not A Handle"}, ["body", "handle"]),
    "title": (lambda b: {**b, "title": ""}, ["body", "title"]),
    "status": (lambda b: {**b, "status": "archived"}, ["body", "status"]),
    "unknown field": (lambda b: {**b, "colour": "red"}, ["body", "colour"]),
    "no variants": (lambda b: {**b, "variants": []}, ["body", "variants"]),
    "sku": (lambda b: _with_variant(b, sku="no spaces allowed"), ["body", "variants", 0, "sku"]),
    "barcode check digit": (
        lambda b: _with_variant(
            b,
            barcode=b["variants"][0]["barcode"][:-1]
            + str((int(b["variants"][0]["barcode"][-1]) + 1) % 10),
        ),
        ["body", "variants", 0, "barcode"],
    ),
    "barcode as a number": (
        lambda b: _with_variant(b, barcode=12345670),
        ["body", "variants", 0, "barcode"],
    ),
    "price not a decimal string": (
        lambda b: _with_variant(b, prices=[{"amount": 19.5, "currency": "USD"}]),
        ["body", "variants", 0, "prices", 0, "amount"],
    ),
    "price beyond the currency's decimals": (
        lambda b: _with_variant(b, prices=[{"amount": "1200.5", "currency": "JPY"}]),
        ["body", "variants", 0, "prices", 0, "amount"],
    ),
    "unknown currency": (
        lambda b: _with_variant(b, prices=[{"amount": "1.00", "currency": "XYZ"}]),
        ["body", "variants", 0, "prices", 0, "currency"],
    ),
    "two prices in one currency": (
        lambda b: _with_variant(b, prices=[{"amount": "1.00", "currency": "USD"}] * 2),
        ["body", "variants", 0, "prices", 1, "currency"],
    ),
    "compare-at not above the price": (
        lambda b: _with_variant(b, compare_at_prices=[{"amount": "18.00", "currency": "USD"}]),
        ["body", "variants", 0, "compare_at_prices", 0, "amount"],
    ),
    "active without a price": (
        lambda b: _with_variant(b, prices=[]),
        ["body", "variants", 0, "prices"],
    ),
    "same sku twice": (
        lambda b: {
            **b,
            "variants": [b["variants"][0], {**b["variants"][1], "sku": b["variants"][0]["sku"]}],
        },
        ["body", "variants", 1, "sku"],
    ),
    "option missing": (
        lambda b: _with_variant(b, option_values={}),
        ["body", "variants", 0, "option_values", "Size"],
    ),
    "same options twice": (
        lambda b: _with_variant(b, option_values={"Size": "S1"}),
        ["body", "variants", 1, "option_values"],
    ),
    "tracked but not shipped": (
        lambda b: _with_variant(b, requires_shipping=False),
        ["body", "variants", 0, "tracked"],
    ),
    "tracked bundle": (
        lambda b: _with_variant(
            b, bundle_components=[{"sku": b["variants"][1]["sku"], "quantity": 1}]
        ),
        ["body", "variants", 0, "tracked"],
    ),
    "bundle of itself": (
        lambda b: _with_variant(
            b, tracked=False, bundle_components=[{"sku": b["variants"][0]["sku"], "quantity": 1}]
        ),
        ["body", "variants", 0, "bundle_components", 0, "sku"],
    ),
    "bundle of an unknown sku": (
        lambda b: _with_variant(
            b, tracked=False, bundle_components=[{"sku": "NO-SUCH-SKU-" + uid(), "quantity": 1}]
        ),
        ["body", "variants", 0, "bundle_components", 0, "sku"],
    ),
    "weight": (
        lambda b: _with_variant(b, weight_grams=-1),
        ["body", "variants", 0, "weight_grams"],
    ),
    "preorder date": (
        lambda b: _with_variant(b, preorder_available_at="next week"),
        ["body", "variants", 0, "preorder_available_at"],
    ),
    "image url": (
        lambda b: {**b, "images": [{"url": "ftp://x", "position": 1}]},
        ["body", "images", 0, "url"],
    ),
    "tag with a comma": (lambda b: {**b, "tags": ["a,b"]}, ["body", "tags", 0]),
    "attribute name": (
        lambda b: {**b, "attributes": {"Bad Name": 1}},
        ["body", "attributes", "Bad Name", "[key]"],
    ),
    "version set by the client": (lambda b: {**b, "version": 3}, ["body", "version"]),
}


async def test_each_rule_answers_422_naming_the_field(run_service) -> None:
    async with run_service("catalog") as (_app, client):
        for rule, (breaks, loc) in RULES.items():
            body = breaks(new_product("rule"))
            response = await client.post("/products", json=body, headers=ADMIN)
            assert response.status_code == 422, (rule, response.text)
            locs = [error["loc"] for error in response.json()["detail"]]
            assert loc in locs, (rule, locs)
        # Nothing of a refused product was kept.
        assert (await client.get(f"/products/{body['handle']}")).status_code == 404


async def test_bundles_do_not_nest_across_products(run_service) -> None:
    async with run_service("catalog") as (_app, client):
        parts = new_product("part")
        assert (await client.post("/products", json=parts, headers=ADMIN)).status_code == 201
        kit = new_product("kit", variants=1)
        kit = _with_variant(
            kit,
            tracked=False,
            bundle_components=[{"sku": parts["variants"][0]["sku"], "quantity": 2}],
        )
        assert (await client.post("/products", json=kit, headers=ADMIN)).status_code == 201
        outer = new_product("outer", variants=1)
        outer = _with_variant(
            outer,
            tracked=False,
            bundle_components=[{"sku": kit["variants"][0]["sku"], "quantity": 1}],
        )
        response = await client.post("/products", json=outer, headers=ADMIN)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == [
            "body",
            "variants",
            0,
            "bundle_components",
            0,
            "sku",
        ]
        # A component of a bundle cannot leave its product while the bundle holds it.
        current = (await client.get(f"/products/{parts['handle']}")).json()
        response = await client.patch(
            f"/products/{current['id']}",
            json={"variants": current["variants"][1:]},
            headers={**ADMIN, "If-Match": str(current["version"])},
        )
        assert response.status_code == 409, response.text


async def test_duplicate_sku_or_handle_is_409(run_service) -> None:
    async with run_service("catalog") as (_app, client):
        first = new_product("dup")
        assert (await client.post("/products", json=first, headers=ADMIN)).status_code == 201
        same_sku = new_product("dup")
        same_sku["variants"][1]["sku"] = first["variants"][0]["sku"]
        response = await client.post("/products", json=same_sku, headers=ADMIN)
        assert response.status_code == 409, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "variants", 1, "sku"]
        same_handle = new_product("dup")
        same_handle["handle"] = first["handle"]
        response = await client.post("/products", json=same_handle, headers=ADMIN)
        assert response.status_code == 409, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "handle"]
        # Neither refused product left a SKU behind.
        for sku in skus_of(same_sku)[:1] + skus_of(same_handle):
            assert (await client.get(f"/variants/{sku}")).status_code == 404


async def test_writes_need_an_admin_token(run_service) -> None:
    async with run_service("catalog") as (_app, client):
        body = new_product("auth")
        response = await client.post("/products", json=body)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert (
            await client.post("/products", json=body, headers={"Authorization": "Bearer nope"})
        ).status_code == 401
        assert (await client.post("/products", json=body, headers=READER)).status_code == 403
        assert (await client.patch("/products/x", json={}, headers={})).status_code == 401
        assert (await client.post("/imports", content="Handle\n")).status_code == 401
        assert (await client.post("/products/x/discontinue")).status_code == 401
        assert (await client.get(f"/products/{body['handle']}")).status_code == 404


async def test_same_idempotency_key_creates_once(run_service, infra) -> None:
    async with run_service("catalog") as (app, client), Topic(infra) as topic:
        body = new_product("idem")
        headers = {**ADMIN, "Idempotency-Key": f"create-{uid()}"}
        first = await client.post("/products", json=body, headers=headers)
        again = await client.post("/products", json=body, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        other = await client.post("/products", json={**body, "title": "Other"}, headers=headers)
        assert other.status_code == 422
        history = (await client.get(f"/products/{body['handle']}/history")).json()
        assert [v["version"] for v in history["versions"]] == [1]
        await drained(app)
        records = [r for r in await topic.records() if r.key.decode() in set(skus_of(body))]
        assert len(records) == len(body["variants"])


# --- changes and the topic -----------------------------------------------------------------


async def test_patch_with_versions_history_and_the_topic(run_service, infra) -> None:
    async with run_service("catalog") as (app, client), Topic(infra) as topic:
        body = new_product("life", variants=3)
        created = await client.post("/products", json=body, headers=ADMIN)
        assert created.status_code == 201, created.text
        assert created.headers["etag"] == '"1"'
        assert created.headers["location"] == f"/products/{body['handle']}"
        product_id = created.json()["id"]
        skus = skus_of(body)

        # No version: 428. A stale one: 409, by header or by field.
        patch = {"title": "Renamed tee"}
        assert (
            await client.patch(f"/products/{product_id}", json=patch, headers=ADMIN)
        ).status_code == 428
        stale = await client.patch(
            f"/products/{product_id}", json=patch, headers={**ADMIN, "If-Match": '"7"'}
        )
        assert stale.status_code == 409, stale.text
        assert stale.json()["detail"]["actual"] == 1
        assert (
            await client.patch(
                f"/products/{product_id}", json={**patch, "version": 2}, headers=ADMIN
            )
        ).status_code == 409

        renamed = await client.patch(
            f"/products/{product_id}", json={**patch, "version": 1}, headers=ADMIN
        )
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["version"] == 2 and renamed.json()["title"] == "Renamed tee"
        # Patching a field to what it is already is no change: same version, no event.
        same = await client.patch(
            f"/products/{product_id}", json=patch, headers={**ADMIN, "If-Match": '"2"'}
        )
        assert same.status_code == 200 and same.json()["version"] == 2

        # One variant re-priced, one removed: a merge patch replaces the list whole.
        variants = renamed.json()["variants"]
        variants[0]["prices"] = [
            {"amount": "25.00", "currency": "USD"},
            {"amount": "23.00", "currency": "EUR"},
        ]
        repriced = await client.patch(
            f"/products/{product_id}",
            json={"variants": variants[:2]},
            headers={**ADMIN, "If-Match": "2", "Content-Type": "application/merge-patch+json"},
        )
        assert repriced.status_code == 200, repriced.text
        assert repriced.json()["version"] == 3
        bad = await client.patch(
            f"/products/{product_id}",
            json={"variants": [{**variants[0], "barcode": "123"}]},
            headers={**ADMIN, "If-Match": "3"},
        )
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "variants", 0, "barcode"]

        gone = await client.post(f"/products/{product_id}/discontinue", headers=ADMIN)
        assert gone.status_code == 200 and gone.json()["status"] == "discontinued"
        again = await client.post(f"/products/{product_id}/discontinue", headers=ADMIN)
        assert again.status_code == 409
        # No patch moves a product out of discontinued; reactivate does, to draft.
        assert (
            await client.patch(
                f"/products/{product_id}",
                json={"status": "active"},
                headers={**ADMIN, "If-Match": "4"},
            )
        ).status_code == 409
        back = await client.post(
            f"/products/{product_id}/reactivate", headers={**ADMIN, "If-Match": "4"}
        )
        assert back.status_code == 200 and back.json()["status"] == "draft"
        assert back.json()["version"] == 5

        history = (await client.get(f"/products/{product_id}/history")).json()["versions"]
        assert [(v["version"], v["cause"]) for v in history] == [
            (1, "created"),
            (2, "patched"),
            (3, "patched"),
            (4, "discontinued"),
            (5, "reactivated"),
        ]
        assert history[0]["document"]["title"] == body["title"]
        assert (await client.get(f"/products/{product_id}")).headers["etag"] == '"5"'
        variant = (await client.get(f"/variants/{skus[0]}")).json()
        assert variant["status"] == "draft" and variant["version"] == 5
        assert variant["prices"][0] == {"amount": "25.00", "currency": "USD"}

        await drained(app)
        latest = await topic.latest(set(skus))
        assert isinstance(latest[skus[2]], CatalogVariantRemoved)
        assert latest[skus[2]].version == 3
        for sku in skus[:2]:
            assert latest[sku].status == "draft" and latest[sku].version == 5
            assert latest[sku].title == "Renamed tee"
        assert [str(p.amount) for p in latest[skus[0]].prices] == ["25.00", "23.00"]
        events = [
            parse(decode(r.value, r.headers))
            for r in await topic.records()
            if r.key.decode() in set(skus)
        ]
        # Per sku: create, rename, (re-price | removal), discontinue, reactivate — the
        # untouched variant skipped the re-price; the no-op patch published nothing.
        by_sku = {sku: [e.version for e in events if e.sku == sku] for sku in skus}
        assert by_sku == {skus[0]: [1, 2, 3, 4, 5], skus[1]: [1, 2, 4, 5], skus[2]: [1, 2, 3]}
        discontinued = [e for e in events if e.version == 4]
        assert {e.sku for e in discontinued} == set(skus[:2])
        assert {e.status for e in discontinued} == {"discontinued"}


async def test_list_filters_search_and_paging(run_service) -> None:
    async with run_service("catalog") as (_app, client):
        vendor = f"Vendor {uid()}"
        bodies = [new_product("list", vendor=vendor) for _ in range(5)]
        bodies[0]["title"] = "Waxed canvas jacket"
        bodies[1]["status"] = "draft"
        bodies[2]["tags"] = ["test", "clearance"]
        for body in bodies:
            assert (await client.post("/products", json=body, headers=ADMIN)).status_code == 201
        ids: list[str] = []
        cursor = None
        while True:
            page = (
                await client.get(
                    "/products",
                    params={"vendor": vendor, "limit": 2, **({"cursor": cursor} if cursor else {})},
                )
            ).json()
            ids += [p["id"] for p in page["products"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert ids == sorted(b["handle"] for b in bodies)

        async def found(**params: str) -> list[str]:
            page = (await client.get("/products", params={"vendor": vendor, **params})).json()
            return [p["handle"] for p in page["products"]]

        assert await found(status="draft") == [bodies[1]["handle"]]
        assert await found(tag="clearance") == [bodies[2]["handle"]]
        assert await found(q="jackets canvas") == [bodies[0]["handle"]]  # stemmed words
        assert await found(q=bodies[3]["variants"][1]["sku"][:6]) == [bodies[3]["handle"]]
        assert await found(q=bodies[4]["variants"][0]["barcode"]) == [bodies[4]["handle"]]
        assert len(await found(q="organic", product_type="T-Shirt")) == 5  # the description
        assert (await client.get("/products", params={"status": "gone"})).status_code == 422
        assert (await client.get("/products", params={"cursor": "%%%"})).status_code == 422


# --- bulk import ---------------------------------------------------------------------------


def unique_sample(variants: int, faults: list[Fault]) -> tuple[str, dict[str, Fault], list[list]]:
    """The generated CSV with handles and SKUs of this run only: (text, faulty, records)."""
    sample = sample_shopify_csv(variants, seed=11, faults=faults)
    tag = uid()
    reader = csv.DictReader(io.StringIO(sample.text, newline=""))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [], lineterminator="\n")
    writer.writeheader()
    for row in reader:
        if row["Handle"]:
            row["Handle"] = f"t{tag}-{row['Handle']}"
        if row["Variant SKU"]:
            row["Variant SKU"] = f"T{tag.upper()}-{row['Variant SKU']}"
        bundle = "stockflow:variant_bundle_components"
        if row.get(bundle):
            row[bundle] = "; ".join(
                f"T{tag.upper()}-{part.strip()}" for part in row[bundle].split(";")
            )
        writer.writerow(row)
    faulty = {f"t{tag}-{handle}": fault for handle, fault in sample.faulty.items()}
    text = out.getvalue()
    return text, faulty, list(csv.reader(io.StringIO(text, newline="")))


async def post_chunks(client, text: str, *, size: int, keyed: bool = True) -> list[dict]:
    file_hash = uuid.uuid5(uuid.NAMESPACE_OID, text).hex
    reports = []
    for chunk in chunk_csv(io.StringIO(text, newline=""), size):
        headers = {**ADMIN, "Content-Type": "text/csv"}
        if keyed:
            headers["Idempotency-Key"] = idempotency_key(
                file_hash, "csv", "USD", size, chunk.number
            )
        response = await client.post(
            "/imports",
            content=chunk.body.encode(),
            headers=headers,
            params={"first_row": chunk.first_row, "currency": "USD"},
        )
        assert response.status_code == 200, response.text
        reports.append(response.json())
    return reports


def total(reports: list[dict], key: str) -> Any:
    if key == "errors":
        return [error for report in reports for error in report["errors"]]
    return sum(report[key] for report in reports)


async def test_import_a_generated_file_then_reimport_changes_nothing(run_service, infra) -> None:
    text, faulty, records = unique_sample(3000, list(Fault))
    rows = len(records) - 1
    handles = {record[0] for record in records[1:] if record[0]}
    good_skus = {
        r[records[0].index("Variant SKU")]
        for r in records[1:]
        if r[0] in handles - set(faulty) and r[records[0].index("Variant SKU")]
    }
    async with run_service("catalog") as (app, client), Topic(infra) as topic:
        started = time.perf_counter()
        reports = await post_chunks(client, text, size=100)
        elapsed = time.perf_counter() - started
        print(
            f"\nimport: {rows} rows, {len(handles)} products in {len(reports)} chunks, "
            f"{elapsed:.2f} s = {rows / elapsed:.0f} rows/s"
        )

        errors = total(reports, "errors")
        assert {error["handle"] for error in errors} == set(faulty), errors
        assert total(reports, "rejected") == len(faulty)
        assert total(reports, "created") == len(handles) - len(faulty)
        assert total(reports, "variants") == len(good_skus)
        for error in errors:  # the row numbers are the file's, across chunks
            record = records[error["row"] - 1]
            assert record[0] in (error["handle"], ""), (error, record[:2])
        columns = {faulty[e["handle"]]: e["column"] for e in errors}
        assert columns[Fault.BAD_BARCODE] == "Variant Barcode"
        assert columns[Fault.BAD_PRICE] == "Variant Price"
        # In the same chunk the reader refuses it; in a later one the catalog (variants.N.sku).
        assert columns[Fault.DUPLICATE_SKU] == "Variant SKU" or columns[
            Fault.DUPLICATE_SKU
        ].endswith(".sku")
        assert columns[Fault.MISSING_HANDLE] == "Handle"
        for handle in faulty:
            assert (await client.get(f"/products/{handle}")).status_code == 404
        good = sorted(handles - set(faulty))
        for handle in good[:: max(len(good) // 20, 1)]:
            stored = await client.get(f"/products/{handle}")
            assert stored.status_code == 200 and stored.json()["version"] == 1

        await drained(app)
        published = [r for r in await topic.records() if r.key.decode() in good_skus]
        latest = await topic.latest(good_skus)
        assert len(published) == len(good_skus) == len(latest)  # one full state per variant
        kit = next(e for e in latest.values() if e.bundle_components)
        assert not kit.tracked and kit.status == "active"
        assert any(not e.requires_shipping and not e.tracked for e in latest.values())

        # The same file again, whole and without keys: every product unchanged, no event.
        again = Topic(infra)
        await again.__aenter__()
        started = time.perf_counter()
        response = await client.post(
            "/imports", content=text.encode(), headers={**ADMIN, "Content-Type": "text/csv"}
        )
        elapsed = time.perf_counter() - started
        print(f"re-import: {rows} rows in {elapsed:.2f} s = {rows / elapsed:.0f} rows/s")
        report = response.json()
        assert report["unchanged"] == len(handles) - len(faulty), report["results"][:3]
        assert report["created"] == report["updated"] == report["events"] == 0
        assert {e["handle"] for e in report["errors"]} == set(faulty)
        # And re-run chunk by chunk with the same keys, as the CLI after a crash: replays.
        replayed = await post_chunks(client, text, size=100)
        assert replayed == reports
        await drained(app)
        assert [r for r in await again.records() if r.key.decode() in good_skus] == []
        history = (await client.get(f"/products/{good[0]}/history")).json()["versions"]
        assert [(v["version"], v["cause"]) for v in history] == [(1, "imported")]


async def test_import_updates_and_removes_then_export_round_trips(run_service, infra) -> None:
    async with run_service("catalog") as (app, client), Topic(infra) as topic:
        vendor = f"Export {uid()}"
        kept, changed = new_product("exp", vendor=vendor), new_product("exp", 3, vendor=vendor)
        lines = "".join(json.dumps(body) + "\n" for body in (kept, changed))
        files = {"file": ("catalog.jsonl", lines.encode(), "application/octet-stream")}
        first = await client.post("/imports", files=files, headers=ADMIN)  # multipart
        assert first.status_code == 200, first.text
        assert first.json()["created"] == 2

        # JSON lines again: one product re-titled and one variant dropped, one bad line.
        edited = {**changed, "title": "Edited", "variants": changed["variants"][:2]}
        broken = new_product("exp", vendor=vendor)
        broken["variants"][0]["barcode"] = "4006381333932"[:-1] + "0"
        body = "\n".join(json.dumps(b) for b in (kept, edited, broken)) + "\n"
        second = await client.post(
            "/imports", content=body, params={"format": "jsonl"}, headers=ADMIN
        )
        report = second.json()
        assert (report["unchanged"], report["updated"], report["rejected"]) == (1, 1, 1)
        assert report["errors"] == [
            {
                "row": 3,
                "column": "variants.0.barcode",
                "handle": broken["handle"],
                "message": report["errors"][0]["message"],
            }
        ]
        assert "check digit" in report["errors"][0]["message"]
        await drained(app)
        latest = await topic.latest(set(skus_of(changed)))
        assert isinstance(latest[changed["variants"][2]["sku"]], CatalogVariantRemoved)
        assert latest[changed["variants"][0]["sku"]].title == "Edited"

        for fmt in ("csv", "jsonl"):
            exported = await client.get("/exports", params={"format": fmt}, headers=READER)
            assert exported.status_code == 200
            if fmt == "csv":
                rows = list(csv.reader(io.StringIO(exported.text, newline="")))
                mine = [rows[0]] + [
                    r for r in rows[1:] if r[0] in (kept["handle"], edited["handle"])
                ]
                assert len(mine) == 1 + 2 + 2
                out = io.StringIO()
                csv.writer(out, lineterminator="\n").writerows(mine)
                content, kind = out.getvalue(), "text/csv"
            else:
                mine = [
                    line
                    for line in exported.text.splitlines()
                    if json.loads(line)["vendor"] == vendor
                ]
                assert len(mine) == 2
                content, kind = "\n".join(mine), "application/x-ndjson"
            back = await client.post(
                "/imports", content=content.encode(), headers={**ADMIN, "Content-Type": kind}
            )
            assert back.json()["unchanged"] == 2, (fmt, back.json())
        assert (
            await client.get("/exports", params={"format": "xml"}, headers=READER)
        ).status_code == 422


async def test_publish_latency(run_service, infra) -> None:
    """From the POST that creates a product to its record on catalog.products.v1."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka_bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    parts = [TopicPartition(TOPIC, p) for p in range(TOPICS[TOPIC].partitions)]
    consumer.assign(parts)
    for tp, offset in (await consumer.end_offsets(parts)).items():
        consumer.seek(tp, offset)
    seen: dict[str, float] = {}

    async def tail() -> None:
        while True:
            for batch in (await consumer.getmany(timeout_ms=100)).values():
                for record in batch:
                    seen.setdefault(record.key.decode(), time.perf_counter())

    tailing = asyncio.create_task(tail())
    try:
        async with run_service("catalog") as (_app, client):
            await asyncio.sleep(1)  # the consumer has its partitions and positions
            latencies = []
            for _ in range(20):
                body = new_product("lat", variants=1)
                sku = body["variants"][0]["sku"]
                sent = time.perf_counter()
                assert (await client.post("/products", json=body, headers=ADMIN)).status_code == 201
                while sku not in seen:
                    assert time.perf_counter() - sent < 10, "not published within 10 s"
                    await asyncio.sleep(0.001)
                latencies.append((seen[sku] - sent) * 1000)
    finally:
        tailing.cancel()
        await consumer.stop()
    latencies.sort()
    print(
        f"\npublish latency (create -> on the topic), 20 products: "
        f"p50 {statistics.median(latencies):.1f} ms, p95 {latencies[18]:.1f} ms, "
        f"max {latencies[-1]:.1f} ms"
    )
    assert statistics.median(latencies) < 1000
