"""A 1.6 charge point built with the third-party `ocpp` package (mobilityhouse) that keeps
reservations the way the specification says (section 5.13 ReserveNow, 5.3 CancelReservation),
used by the test suite as an independent peer. The package checks every message both ways
against the official OCPP 1.6 JSON schemas.

It boots with two Available connectors and then, driven by the server: accepts a ReserveNow
(reporting the connector Reserved), accepts its CancelReservation (Available again), accepts
a second ReserveNow, and when the server starts the reserving driver's session with
RemoteStartTransaction on the reserved connector, starts the transaction with that
reservationId and stops it. It prints one `OK` line per step and exits 0, or exits 1 at the
first deviation.

usage: ocpp16_reservation.py URL CHARGER_ID PASSWORD ID_TAG
"""

import asyncio
import base64
import sys
from datetime import datetime, timezone

import websockets
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus


def now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


class ReservingChargePoint(ChargePoint):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # reservation id -> (connector, idTag, expiry)
        self.reservations = {}
        self.reserved = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.done = asyncio.Event()

    @on(Action.reserve_now)
    def on_reserve_now(self, connector_id, expiry_date, id_tag, reservation_id, parent_id_tag=None, **kwargs):
        expiry = datetime.fromisoformat(expiry_date.replace("Z", "+00:00"))
        if expiry <= datetime.now(timezone.utc) or connector_id not in (1, 2):
            return call_result.ReserveNow(status="Rejected")
        if any(c == connector_id for (c, _, _) in self.reservations.values()):
            return call_result.ReserveNow(status="Occupied")
        self.reservations[reservation_id] = (connector_id, id_tag, expiry)
        return call_result.ReserveNow(status="Accepted")

    @after(Action.reserve_now)
    async def after_reserve_now(self, connector_id, reservation_id, **kwargs):
        if reservation_id in self.reservations:
            await self.call(call.StatusNotification(connector_id=connector_id, error_code="NoError", status="Reserved"))
            print(f"OK reserved {reservation_id} on connector {connector_id}", flush=True)
            self.reserved.set()

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id, **kwargs):
        if reservation_id not in self.reservations:
            return call_result.CancelReservation(status="Rejected")
        self.cancelled_connector = self.reservations.pop(reservation_id)[0]
        return call_result.CancelReservation(status="Accepted")

    @after(Action.cancel_reservation)
    async def after_cancel_reservation(self, reservation_id, **kwargs):
        await self.call(call.StatusNotification(connector_id=self.cancelled_connector, error_code="NoError", status="Available"))
        print(f"OK cancelled {reservation_id}", flush=True)
        self.cancelled.set()

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag, connector_id=None, **kwargs):
        held = [(rid, c) for rid, (c, tag, _) in self.reservations.items() if c == connector_id]
        # a reserved connector starts only for the tag it is held for
        if held and self.reservations[held[0][0]][1] != id_tag:
            return call_result.RemoteStartTransaction(status="Rejected")
        self.remote = (id_tag, connector_id, held[0][0] if held else None)
        return call_result.RemoteStartTransaction(status="Accepted")

    @after(Action.remote_start_transaction)
    async def after_remote_start(self, **kwargs):
        id_tag, connector_id, reservation_id = self.remote
        check(reservation_id is not None, f"the remote start was not on the reserved connector: {self.remote}")
        self.reservations.pop(reservation_id)
        start = await self.call(call.StartTransaction(
            connector_id=connector_id, id_tag=id_tag, meter_start=1000, timestamp=now(),
            reservation_id=reservation_id,
        ))
        check(start.id_tag_info["status"] == AuthorizationStatus.accepted, f"start {start}")
        await self.call(call.StatusNotification(connector_id=connector_id, error_code="NoError", status="Charging"))
        stop = await self.call(call.StopTransaction(
            meter_stop=2500, timestamp=now(), transaction_id=start.transaction_id, reason="Local", id_tag=id_tag,
        ))
        check(stop.id_tag_info is None or stop.id_tag_info["status"] == AuthorizationStatus.accepted, f"stop {stop}")
        await self.call(call.StatusNotification(connector_id=connector_id, error_code="NoError", status="Available"))
        print(f"OK used {reservation_id} by transaction {start.transaction_id}", flush=True)
        self.done.set()


async def run(cp: ReservingChargePoint) -> None:
    boot = await cp.call(call.BootNotification(charge_point_model="PyModel", charge_point_vendor="PyVendor"))
    check(boot.status == RegistrationStatus.accepted, f"boot {boot}")
    for connector in (1, 2):
        await cp.call(call.StatusNotification(connector_id=connector, error_code="NoError", status="Available"))
    print("OK booted", flush=True)
    await asyncio.wait_for(cp.reserved.wait(), timeout=30)
    await asyncio.wait_for(cp.cancelled.wait(), timeout=30)
    await asyncio.wait_for(cp.done.wait(), timeout=30)


async def main() -> None:
    url, charger_id, password, _id_tag = sys.argv[1:5]
    auth = base64.b64encode(f"{charger_id}:{password}".encode()).decode()
    async with websockets.connect(
        f"{url}/{charger_id}",
        subprotocols=["ocpp1.6"],
        additional_headers={"Authorization": f"Basic {auth}"},
        open_timeout=10,
    ) as ws:
        cp = ReservingChargePoint(charger_id, ws, response_timeout=10)
        listener = asyncio.create_task(cp.start())
        try:
            await asyncio.wait_for(run(cp), timeout=90)
        finally:
            listener.cancel()


if __name__ == "__main__":
    asyncio.run(main())
