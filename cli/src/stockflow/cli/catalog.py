"""`stockflow catalog ...` commands: bulk import with a progress bar and an error report, export.

An import streams the file to the catalog's `POST /imports` in chunks of whole products. Each
chunk is one transaction on the server and carries an Idempotency-Key derived from the file's
hash, the options and the chunk number, so re-running after a crash (or a lost answer) is safe:
chunks already applied are answered from the server's record, the rest are applied. Re-running
a file whose content the catalog already has changes nothing (equal content, no new version).
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from stockflow.cli.common import (
    CliError,
    JsonOption,
    auth_headers,
    plain,
    print_json,
    refusal,
    service_url,
)

app = typer.Typer(no_args_is_help=True)

Format = Literal["csv", "jsonl"]
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8"}
OUTCOMES = ("created", "updated", "unchanged", "rejected")


@dataclass(frozen=True)
class Chunk:
    """Whole products of a file: `body` is importable by itself, its first record at `first_row`."""

    number: int
    first_row: int
    rows: int
    body: str
    products: int
    errors: tuple[dict[str, Any], ...] = ()
    """Rows the CLI itself refused (sent blank so that row numbers hold)."""


@dataclass
class Totals:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    variants: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    chunks: int = 0
    replayed: int = 0

    def add(self, report: dict[str, Any], *, replayed: bool) -> None:
        self.chunks += 1
        self.replayed += replayed
        for outcome in OUTCOMES:
            self.counts[outcome] += report.get(outcome, 0)
        self.variants += report.get("variants", 0)
        self.errors += report.get("errors", [])


def format_of(path: Path, given: str | None) -> Format:
    if given:
        if given not in CONTENT_TYPES:
            raise typer.BadParameter("use csv or jsonl", param_hint="--format")
        return given  # type: ignore[return-value]
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def idempotency_key(file_hash: str, fmt: str, currency: str, chunk_size: int, number: int) -> str:
    """The same file imported the same way gives the same key per chunk, and nothing else does."""
    run = hashlib.sha256(f"{file_hash}|{fmt}|{currency}|{chunk_size}".encode()).hexdigest()
    return f"catalog-import-{run[:40]}-{number}"


def chunk_csv(lines: Iterator[str], products_per_chunk: int) -> Iterator[Chunk]:
    """Split a Shopify CSV into chunks of whole products, each with the header.

    Rows of one product are consecutive and share its Handle (a row without one joins the
    product above, as the server reads it); blank rows stay where they are so row numbers hold.
    A handle that comes back after other products is refused here, as the server would within
    one chunk: its rows go out blank and the chunk's `errors` say why.
    """
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    handle_at = next(
        (i for i, name in enumerate(header) if name.strip().lstrip("\ufeff") == "Handle"), None
    )
    if handle_at is None:
        raise typer.BadParameter("the first row must be a header with a Handle column")
    number, first_row, products = 0, 2, 0
    rows: list[list[str]] = []
    errors: list[dict[str, Any]] = []
    first_seen: dict[str, int] = {}
    current, refused = None, False
    for row_number, record in enumerate(reader, start=2):
        handle = record[handle_at].strip() if len(record) > handle_at else ""
        if handle and handle != current:
            if products == products_per_chunk:
                number += 1
                text = _csv_text(header, rows)
                yield Chunk(number, first_row, len(rows), text, products, tuple(errors))
                first_row, rows, products, errors = row_number, [], 0, []
            current, refused = handle, handle in first_seen
            if refused:
                errors.append(
                    {
                        "row": row_number,
                        "column": "Handle",
                        "handle": handle,
                        "message": f"handle {handle} already used at row {first_seen[handle]}; "
                        "keep a product's rows together",
                    }
                )
            else:
                first_seen[handle] = row_number
                products += 1
        rows.append([] if refused else record)
    if rows:
        text = _csv_text(header, rows)
        yield Chunk(number + 1, first_row, len(rows), text, products, tuple(errors))


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def chunk_jsonl(lines: Iterator[str], products_per_chunk: int) -> Iterator[Chunk]:
    """Split JSON lines into chunks of `products_per_chunk` lines (blank lines kept)."""
    number, first_row, products = 0, 1, 0
    rows: list[str] = []
    for row_number, line in enumerate(lines, start=1):
        if line.strip() and products == products_per_chunk:
            number += 1
            yield Chunk(number, first_row, len(rows), "".join(rows), products)
            first_row, rows, products = row_number, [], 0
        products += bool(line.strip())
        rows.append(line if line.endswith("\n") else line + "\n")
    if rows:
        yield Chunk(number + 1, first_row, len(rows), "".join(rows), products)


def chunks_of(path: Path, fmt: Format, products_per_chunk: int) -> Iterator[Chunk]:
    with path.open(encoding="utf-8-sig", newline="") as source:
        if fmt == "csv":
            yield from chunk_csv(source, products_per_chunk)
        else:
            yield from chunk_jsonl(source, products_per_chunk)


def count_records(path: Path, fmt: Format) -> int:
    with path.open(encoding="utf-8-sig", newline="") as source:
        if fmt == "csv":
            return max(sum(1 for _ in csv.reader(source)) - 1, 0)
        return sum(1 for _ in source)


def post_chunk(
    client: httpx.Client, chunk: Chunk, *, fmt: Format, currency: str, key: str, attempts: int = 5
) -> tuple[dict[str, Any], bool]:
    """POST one chunk: (its report, whether an earlier run had applied it).

    Retried on connection errors and 5xx; the key makes retries safe.
    """
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            response = client.post(
                "/imports",
                content=chunk.body.encode(),
                params={"format": fmt, "currency": currency, "first_row": chunk.first_row},
                headers={"Content-Type": CONTENT_TYPES[fmt], "Idempotency-Key": key},
            )
        except httpx.TransportError:
            if attempt == attempts:
                raise  # main.py names the URL it could not reach
        else:
            if response.status_code < 500 or attempt == attempts:
                if response.status_code != 200:
                    raise CliError(
                        f"chunk {chunk.number} (from row {chunk.first_row}): "
                        + refusal("catalog", response)
                    )
                return response.json(), response.headers.get("idempotent-replayed") == "true"
        time.sleep(delay)
        delay = min(delay * 2, 8)
    raise AssertionError("unreachable")


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    format: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from the file name)")
    ] = None,
    currency: Annotated[
        str, typer.Option(help="ISO 4217 currency of the CSV's Variant Price columns")
    ] = "USD",
    chunk_size: Annotated[
        int, typer.Option(min=1, max=2000, help="products per request (one transaction each)")
    ] = 100,
    as_json: JsonOption = False,
) -> None:
    """Import a Shopify product CSV or JSON lines; prints every rejected row at the end."""
    fmt = format_of(file, format)
    file_hash = file_sha256(file)
    total_rows = count_records(file, fmt)
    totals = Totals()
    console = Console()
    started = time.perf_counter()
    columns = (
        TextColumn("[bold]importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with (
        httpx.Client(base_url=service_url("catalog"), headers=auth_headers(), timeout=300) as http,
        Progress(*columns, console=console, disable=as_json) as progress,
    ):
        task = progress.add_task("import", total=total_rows)
        for chunk in chunks_of(file, fmt, chunk_size):
            key = idempotency_key(file_hash, fmt, currency, chunk_size, chunk.number)
            report, replayed = post_chunk(http, chunk, fmt=fmt, currency=currency, key=key)
            totals.add(report, replayed=replayed)
            totals.errors += chunk.errors
            totals.counts["rejected"] += len(chunk.errors)
            progress.advance(task, chunk.rows)
    elapsed = time.perf_counter() - started
    counts = totals.counts
    if as_json:
        print_json(
            counts
            | {"variants": totals.variants, "chunks": totals.chunks, "replayed": totals.replayed}
            | {"errors": sorted(totals.errors, key=lambda e: e["row"])}
        )
        raise typer.Exit(1 if totals.errors else 0)
    console.print(
        f"{plain(file.name)}: {sum(counts.values())} products in {elapsed:.1f} s "
        f"({total_rows / elapsed if elapsed else 0:.0f} rows/s) — "
        + ", ".join(f"{counts[o]} {o}" for o in OUTCOMES)
    )
    if totals.replayed:
        console.print(
            f"{totals.replayed} of {totals.chunks} chunks were applied by an earlier run of this "
            "file; their outcomes above are that run's"
        )
    if totals.errors:
        console.print(error_table(totals.errors))
        raise typer.Exit(1)


def error_table(errors: list[dict[str, Any]]) -> Table:
    table = Table("row", "column", "handle", "problem", title="rejected rows")
    for error in sorted(errors, key=lambda e: e["row"]):
        table.add_row(
            str(error["row"]),
            plain(error["column"]),
            plain(error.get("handle")),
            plain(error["message"]),
        )
    return table


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="the file to write", dir_okay=False)],
    format: Annotated[str, typer.Option("--format", help="csv or jsonl")] = "csv",
    currency: Annotated[str, typer.Option(help="currency of the CSV's price columns")] = "USD",
) -> None:
    """Export the whole catalog in the import formats (re-importing it changes nothing)."""
    fmt = format_of(out, format)
    url = service_url("catalog") + "/exports"
    written = 0
    partial = out.with_name(out.name + ".partial")
    try:
        with (
            httpx.stream(
                "GET",
                url,
                params={"format": fmt, "currency": currency},
                headers=auth_headers(),
                timeout=300,
            ) as response,
            partial.open("wb") as sink,
        ):
            if response.status_code != 200:
                response.read()
                raise CliError(refusal("catalog", response))
            for block in response.iter_bytes():
                sink.write(block)
                written += len(block)
    except (httpx.HTTPError, CliError):
        partial.unlink(missing_ok=True)
        raise
    partial.replace(out)
    Console().print(f"wrote {plain(out)} ({written:,} bytes, {fmt})")
