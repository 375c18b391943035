"""The demo's warehouse person and carrier: pick, pack and ship by themselves, then deliver.

Off unless STOCKFLOW_FULFILLMENT_AUTO_SHIP is true. Every step is a use case in its own unit
of work — the same calls the API makes — so the domain's rules and the outgoing events are the
same as when people do the work. Picks find every unit, unless told to come up short now and
then (`auto_short_pick_every`: the short shipment then ships what was picked); the warehouse
may cancel a picked shipment now and then (`auto_cancel_every`); a package without catalog
data is "weighed" at a nominal size; the simulated carrier scans in transit half way to the
delivery delay and delivered at it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial

from stockflow.fulfillment import store, usecases
from stockflow.fulfillment.domain import (
    Dimensions,
    FulfillmentError,
    PackingError,
    ShipmentStatus,
    TrackingUpdate,
)
from stockflow.fulfillment.settings import FulfillmentSettings
from stockflow.runtime.logging import get_logger
from stockflow.runtime.outbox import UnitOfWork
from stockflow.runtime.service import ServiceContext

log = get_logger(__name__)

NOMINAL_PACKAGE = usecases.PackageSpec(weight_grams=1_000, dimensions=Dimensions(300, 200, 150))
RETRY_AFTER_S = 60.0
WAREHOUSE_CANCEL = "warehouse: the goods cannot be shipped (autopilot)"


class Autopilot:
    """One pass (`step`) moves everything that is due one step further."""

    def __init__(self, ctx: ServiceContext, settings: FulfillmentSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self._failed: dict[str, float] = {}
        self._pick_lists = 0  # counted for auto_short_pick_every
        self._picked = 0  # picked shipments counted for auto_cancel_every

    async def step(self) -> None:
        await self._pick()
        await self._pack_and_ship()
        await self._deliver()

    async def _pick(self) -> None:
        async with self.ctx.pool.acquire() as conn:
            locations = await store.locations_with_work(
                conn, older_than_s=self.settings.auto_ship_delay_s
            )
        for location in locations:
            await self._run(location, partial(self._pick_everything, location))

    async def _pick_everything(self, location: str, uow: UnitOfWork) -> None:
        """A pick list for the due shipments, every unit found (in one transaction)."""
        created = await usecases.create_pick_list(
            uow,
            location,
            max_shipments=self.settings.max_pick_list_shipments,
            older_than_s=self.settings.auto_ship_delay_s,
        )
        found = {line.sku: line.quantity for line in created.pick_list.lines}
        self._pick_lists += 1
        if _every(self.settings.auto_short_pick_every, self._pick_lists) and found:
            first = created.pick_list.lines[0].sku
            found[first] -= 1  # the bin holds one unit fewer than the system says
        await usecases.confirm_pick_list(uow, created.pick_list_id, found)

    async def _pack_and_ship(self) -> None:
        async with self.ctx.pool.acquire() as conn:
            held = []
            if self.settings.auto_short_pick_every:
                held = await store.shipment_ids_in_status(conn, ["on_hold"])
            ready = await store.shipment_ids_in_status(conn, ["picked", "packed", "labelled"])
        for shipment_id in held:
            await self._run(shipment_id, partial(_ship_what_was_picked, shipment_id))
        for shipment_id in ready:
            if not self._waiting(shipment_id):
                await self._run(shipment_id, partial(self._pack_and_ship_one, shipment_id))

    async def _pack_and_ship_one(self, shipment_id: str, uow: UnitOfWork) -> None:
        shipment = await store.load_shipment(uow.conn, shipment_id)
        if shipment is not None and shipment.status is ShipmentStatus.PICKED:
            self._picked += 1
            if _every(self.settings.auto_cancel_every, self._picked):
                await usecases.cancel_shipment(uow, shipment_id, WAREHOUSE_CANCEL)
                return
            try:
                await usecases.pack(uow, shipment_id)
            except PackingError:  # no catalog data: measure it, as a packer would
                await usecases.pack(uow, shipment_id, [NOMINAL_PACKAGE])
        await usecases.ship(uow, shipment_id, self.settings, datetime.now(UTC))

    async def _deliver(self) -> None:
        delay = self.settings.auto_deliver_delay_s
        async with self.ctx.pool.acquire() as conn:
            leaving = await store.shipment_ids_in_status(
                conn, ["shipped"], shipped_before_s=delay / 2
            )
            arriving = await store.shipment_ids_in_status(
                conn, ["in_transit"], shipped_before_s=delay
            )
        for status, ids in (("in_transit", leaving), ("delivered", arriving)):
            for shipment_id in ids:
                async with self.ctx.pool.acquire() as conn:
                    shipment = await store.load_shipment(conn, shipment_id)
                if shipment is None or shipment.label is None:
                    continue
                update = usecases.tracking_update(
                    shipment.label.tracking_number,
                    status,
                    datetime.now(UTC),
                    "simulated carrier scan",
                )
                await self._run(shipment_id, partial(_record, update))

    async def _run(self, subject: str, step: Callable[[UnitOfWork], Awaitable[None]]) -> None:
        """Use cases in one transaction; a refusal is logged and the subject rests a minute."""
        try:
            async with self.ctx.unit_of_work() as uow:
                await step(uow)
        except usecases.NotFound:
            return
        except FulfillmentError as exc:
            log.warning("autopilot step refused", subject=subject, error=str(exc))
            self._failed[subject] = time.monotonic()

    def _waiting(self, subject: str) -> bool:
        failed_at = self._failed.get(subject)
        return failed_at is not None and time.monotonic() - failed_at < RETRY_AFTER_S


def _every(every: int, count: int) -> bool:
    """True for the `every`-th count (never when `every` is 0)."""
    return every > 0 and count % every == 0


async def _ship_what_was_picked(shipment_id: str, uow: UnitOfWork) -> None:
    """A short shipment leaves with what was found; with nothing found, it is cancelled."""
    shipment = await store.load_shipment(uow.conn, shipment_id)
    if shipment is None or shipment.status is not ShipmentStatus.ON_HOLD:
        return
    if any(shipment.picked.values()):
        await usecases.ship_what_was_picked(uow, shipment_id)
    else:
        await usecases.cancel_shipment(uow, shipment_id, WAREHOUSE_CANCEL)


async def _record(update: TrackingUpdate, uow: UnitOfWork) -> None:
    await usecases.record_tracking(uow, update)


async def autopilot(ctx: ServiceContext) -> None:
    """Background task: when enabled, move due shipments along every `autopilot_interval_s`."""
    settings = FulfillmentSettings()
    if not settings.auto_ship:
        return
    log.info(
        "fulfillment autopilot on",
        pick_after_s=settings.auto_ship_delay_s,
        deliver_after_s=settings.auto_deliver_delay_s,
    )
    pilot = Autopilot(ctx, settings)
    while True:
        try:
            await pilot.step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 — the autopilot must outlive any failure
            log.warning("autopilot pass failed", error=repr(exc))
        await asyncio.sleep(settings.autopilot_interval_s)
