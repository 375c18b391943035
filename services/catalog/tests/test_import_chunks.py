"""The CLI's chunks of a file read, chunk by chunk, as the whole file does (no servers)."""

from __future__ import annotations

import io

from stockflow.catalog.csv_io import read_shopify_csv
from stockflow.catalog.sample_data import Fault, sample_shopify_csv
from stockflow.cli.catalog import chunk_csv, chunk_jsonl, idempotency_key


def _read(text: str, first_row: int = 2) -> list[tuple[str, int, int, tuple]]:
    shift = first_row - 2
    return [
        (
            item.handle,
            item.first_row + shift,
            item.last_row + shift,
            tuple((e.row + shift, e.column) for e in item.errors),
        )
        for item in read_shopify_csv(io.StringIO(text, newline=""), shop_currency="USD")
    ]


def test_chunks_hold_whole_products_and_keep_the_file_row_numbers() -> None:
    faults = [Fault.BAD_BARCODE, Fault.BAD_PRICE, Fault.MISSING_HANDLE]
    sample = sample_shopify_csv(400, seed=5, faults=faults)
    chunks = list(chunk_csv(io.StringIO(sample.text, newline=""), 7))
    assert len(chunks) > 5 and all(chunk.products <= 7 for chunk in chunks)
    chunked = [entry for chunk in chunks for entry in _read(chunk.body, chunk.first_row)]
    assert chunked == _read(sample.text)
    assert sum(chunk.rows for chunk in chunks) == sample.text.count("\n") - 1


def test_a_handle_that_comes_back_later_is_refused_by_the_cli() -> None:
    text = "Handle,Title,Variant SKU\na,A,A-1\nb,B,B-1\na,A again,A-2\n,,A-3\nc,C,C-1\n"
    first, second = chunk_csv(io.StringIO(text, newline=""), 2)
    assert (first.products, second.products) == (2, 1)
    assert [e["row"] for e in second.errors] == [4]
    assert "already used at row 2" in second.errors[0]["message"]
    # The refused rows go out blank, so the rows after them keep their numbers.
    assert [
        item.first_row + second.first_row - 2
        for item in read_shopify_csv(io.StringIO(second.body, newline=""), shop_currency="USD")
    ] == [6]


def test_jsonl_chunks_and_keys() -> None:
    lines = ['{"handle": "a"}\n', "\n", '{"handle": "b"}\n', '{"handle": "c"}']
    chunks = list(chunk_jsonl(iter(lines), 2))
    assert [(c.first_row, c.rows, c.products) for c in chunks] == [(1, 3, 2), (4, 1, 1)]
    assert chunks[1].body.endswith("\n")
    key = idempotency_key("f" * 64, "csv", "USD", 100, 3)
    assert key == idempotency_key("f" * 64, "csv", "USD", 100, 3) and key.endswith("-3")
    assert key != idempotency_key("f" * 64, "csv", "EUR", 100, 3)
