"""A 1.6 charge point built with the third-party `ocpp` package (mobilityhouse), used by the
test suite as an independent peer. It runs a full lifecycle against the server and answers a
RemoteStartTransaction / Reset if the server sends one, then exits 0; any deviation exits 1.

usage: ocpp16_charge_point.py URL CHARGER_ID PASSWORD ID_TAG
"""

import asyncio
import base64
import sys
from datetime import datetime, timezone

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus, RemoteStartStopStatus, ResetStatus


def now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class TestChargePoint(ChargePoint):
    remote_starts = 0

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag, connector_id=None, charging_profile=None, **kwargs):
        self.remote_starts += 1
        return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.accepted)

    @on(Action.reset)
    def on_reset(self, type, **kwargs):
        return call_result.Reset(status=ResetStatus.accepted)


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


async def lifecycle(cp: TestChargePoint, id_tag: str) -> None:
    boot = await cp.call(call.BootNotification(charge_point_model="PyModel", charge_point_vendor="PyVendor"))
    check(boot.status == RegistrationStatus.accepted, f"boot {boot}")
    await cp.call(call.Heartbeat())
    await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
    auth = await cp.call(call.Authorize(id_tag=id_tag))
    check(auth.id_tag_info["status"] == AuthorizationStatus.accepted, f"authorize {auth}")
    start = await cp.call(call.StartTransaction(connector_id=1, id_tag=id_tag, meter_start=100, timestamp=now()))
    check(start.transaction_id > 0, f"start {start}")
    check(start.id_tag_info["status"] == AuthorizationStatus.accepted, f"start status {start}")
    await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
    await cp.call(call.MeterValues(connector_id=1, transaction_id=start.transaction_id, meter_value=[{
        "timestamp": now(),
        "sampledValue": [{"value": "2.5", "unit": "kWh", "measurand": "Energy.Active.Import.Register"}],
    }]))
    stop = await cp.call(call.StopTransaction(meter_stop=3100, timestamp=now(), transaction_id=start.transaction_id,
                                              reason="Local", id_tag=id_tag))
    check(stop.id_tag_info is None or stop.id_tag_info["status"] == AuthorizationStatus.accepted, f"stop {stop}")
    await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
    print(f"OK transaction {start.transaction_id}")


async def main() -> None:
    url, charger_id, password, id_tag = sys.argv[1:5]
    token = base64.b64encode(f"{charger_id}:{password}".encode()).decode()
    async with websockets.connect(
        f"{url}/{charger_id}",
        subprotocols=["ocpp1.6"],
        additional_headers={"Authorization": f"Basic {token}"},
        open_timeout=10,
    ) as ws:
        check(ws.subprotocol == "ocpp1.6", f"negotiated {ws.subprotocol}")
        cp = TestChargePoint(charger_id, ws, response_timeout=10)
        listener = asyncio.create_task(cp.start())
        try:
            await asyncio.wait_for(lifecycle(cp, id_tag), timeout=30)
        finally:
            listener.cancel()


if __name__ == "__main__":
    asyncio.run(main())
