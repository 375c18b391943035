"""A stand-in stock participant: reserves every line in full, with no stock SQL of its own.

A diagnostic, not the benchmark (`run.py --stand-in-stock`): it starts on the stock service's
port, with the stock schema's backbone tables, on the same runtime (batch consumer, inbox,
outbox, relay) as every service, so the difference between a run with it and a normal run is
what the real stock service's own work costs the saga. Figures measured with it are labelled
as such and are not the saga's.
"""

from __future__ import annotations

import argparse

import uvicorn

from stockflow.contracts.events._shared import Allocation
from stockflow.contracts.events.stock import ReservedLine, StockReserved
from stockflow.runtime.consumer import Consumer, Inbound
from stockflow.runtime.outbox import UnitOfWork
from stockflow.runtime.service import ServiceDefinition, create_app
from stockflow.runtime.settings import Settings

LOCATION = "WH-EAST"


async def reserve_all(uow: UnitOfWork, items: list[Inbound]) -> None:
    for item in items:
        command = item.event
        lines = [
            ReservedLine(
                line_id=line.line_id,
                sku=line.sku,
                requested=line.quantity,
                reserved=line.quantity,
                backordered=0,
                allocations=[Allocation(location=LOCATION, quantity=line.quantity)],
            )
            for line in command.lines
        ]
        uow.with_cause(item.cloud).publish(
            StockReserved(order_id=command.order_id, lines=lines, complete=True)
        )


STANDIN = ServiceDefinition(
    name="stock",
    description="bench stand-in for the stock service (reserves everything)",
    consumers=[
        Consumer(
            "stock.commands",
            ["stock.commands.v1"],
            handle_batch=reserve_all,
            event_types={"stock.reserve.requested.v1"},
        )
    ],
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("service", choices=["stock"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = Settings(service="stock", http_port=args.port)
    app = create_app(STANDIN, settings)
    uvicorn.run(app, host=settings.http_host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
