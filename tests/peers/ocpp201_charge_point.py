"""A 2.0.1 charging station built with the third-party `ocpp` package (mobilityhouse), used by
the test suite as an independent peer. The package checks every message both ways against the
official OCPP 2.0.1 JSON schemas.

It runs a station lifecycle with an RFID transaction (Started / Updated / Ended), then waits for
the server to start a session remotely: it accepts RequestStartTransaction, reports the
transaction with the remoteStartId it was given, accepts RequestStopTransaction and ends the
transaction. It exits 0 when all of that happened as expected, 1 otherwise.

usage: ocpp201_charge_point.py URL STATION_ID PASSWORD ID_TOKEN
"""

import asyncio
import base64
import sys
from datetime import datetime, timezone

import websockets
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action

EVSE = {"id": 1, "connector_id": 1}


def now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def energy(wh: float, context: str, unit: str = "Wh") -> list:
    return [{
        "timestamp": now(),
        "sampled_value": [{
            "value": wh, "measurand": "Energy.Active.Import.Register", "context": context,
            "unit_of_measure": {"unit": unit},
        }],
    }]


class TestStation(ChargePoint):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.remote_start = None
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()

    @on(Action.request_start_transaction)
    def on_request_start(self, id_token, remote_start_id, evse_id=None, **kwargs):
        self.remote_start = (id_token, remote_start_id, evse_id)
        return call_result.RequestStartTransaction(status="Accepted")

    @after(Action.request_start_transaction)
    async def after_request_start(self, id_token, remote_start_id, evse_id=None, **kwargs):
        answer = await self.call(call.TransactionEvent(
            event_type="Started", timestamp=now(), trigger_reason="RemoteStart", seq_no=0,
            transaction_info={"transaction_id": "PY-REMOTE", "remote_start_id": remote_start_id},
            id_token=id_token, evse=EVSE, meter_value=energy(5000, "Transaction.Begin"),
        ))
        check(answer.id_token_info["status"] == "Accepted", f"remote start {answer}")
        await self.call(call.TransactionEvent(
            event_type="Updated", timestamp=now(), trigger_reason="MeterValuePeriodic", seq_no=1,
            transaction_info={"transaction_id": "PY-REMOTE", "charging_state": "Charging"},
            meter_value=energy(6200, "Sample.Periodic"),
        ))
        self.started.set()

    @on(Action.request_stop_transaction)
    def on_request_stop(self, transaction_id, **kwargs):
        check(transaction_id == "PY-REMOTE", f"stop for {transaction_id}")
        return call_result.RequestStopTransaction(status="Accepted")

    @after(Action.request_stop_transaction)
    async def after_request_stop(self, transaction_id, **kwargs):
        await self.call(call.TransactionEvent(
            event_type="Ended", timestamp=now(), trigger_reason="RemoteStop", seq_no=2,
            transaction_info={"transaction_id": transaction_id, "stopped_reason": "Remote"},
            meter_value=energy(7.5, "Transaction.End", unit="kWh"),
        ))
        self.stopped.set()

    @on(Action.reset)
    def on_reset(self, type, **kwargs):
        return call_result.Reset(status="Accepted")


async def lifecycle(cs: TestStation, id_token: str) -> None:
    boot = await cs.call(call.BootNotification(
        charging_station={"model": "PyModel", "vendor_name": "PyVendor", "firmware_version": "py-1"},
        reason="PowerUp",
    ))
    check(boot.status == "Accepted", f"boot {boot}")
    await cs.call(call.Heartbeat())
    await cs.call(call.StatusNotification(timestamp=now(), connector_status="Available", evse_id=1, connector_id=1))
    token = {"id_token": id_token, "type": "ISO14443"}
    auth = await cs.call(call.Authorize(id_token=token))
    check(auth.id_token_info["status"] == "Accepted", f"authorize {auth}")

    started = await cs.call(call.TransactionEvent(
        event_type="Started", timestamp=now(), trigger_reason="Authorized", seq_no=0,
        transaction_info={"transaction_id": "PY-RFID"}, id_token=token, evse=EVSE,
        meter_value=energy(100, "Transaction.Begin"),
    ))
    check(started.id_token_info["status"] == "Accepted", f"started {started}")
    await cs.call(call.StatusNotification(timestamp=now(), connector_status="Occupied", evse_id=1, connector_id=1))
    await cs.call(call.TransactionEvent(
        event_type="Updated", timestamp=now(), trigger_reason="MeterValuePeriodic", seq_no=1,
        transaction_info={"transaction_id": "PY-RFID", "charging_state": "Charging"},
        meter_value=energy(2.5, "Sample.Periodic", unit="kWh"),
    ))
    await cs.call(call.TransactionEvent(
        event_type="Ended", timestamp=now(), trigger_reason="EVDeparted", seq_no=2,
        transaction_info={"transaction_id": "PY-RFID", "stopped_reason": "EVDisconnected"},
        meter_value=energy(3100, "Transaction.End"),
    ))
    await cs.call(call.StatusNotification(timestamp=now(), connector_status="Available", evse_id=1, connector_id=1))
    print("OK rfid transaction PY-RFID", flush=True)

    await asyncio.wait_for(cs.started.wait(), timeout=30)
    check(cs.remote_start[0]["type"] == "Central", f"remote start token {cs.remote_start}")
    check(cs.remote_start[2] == 1, f"remote start evse {cs.remote_start}")
    await asyncio.wait_for(cs.stopped.wait(), timeout=30)
    print(f"OK remote transaction {cs.remote_start[1]}", flush=True)


async def main() -> None:
    url, station_id, password, id_token = sys.argv[1:5]
    auth = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    async with websockets.connect(
        f"{url}/{station_id}",
        subprotocols=["ocpp2.0.1"],
        additional_headers={"Authorization": f"Basic {auth}"},
        open_timeout=10,
    ) as ws:
        check(ws.subprotocol == "ocpp2.0.1", f"negotiated {ws.subprotocol}")
        cs = TestStation(station_id, ws, response_timeout=10)
        listener = asyncio.create_task(cs.start())
        try:
            await asyncio.wait_for(lifecycle(cs, id_token), timeout=90)
        finally:
            listener.cancel()


if __name__ == "__main__":
    asyncio.run(main())
