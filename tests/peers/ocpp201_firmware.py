"""A 2.0.1 charging station built with the third-party `ocpp` package (mobilityhouse) that
installs firmware the way the specification describes (L01, UpdateFirmware with a requestId),
used by the test suite as an independent peer. The package checks every message both ways
against the official OCPP 2.0.1 JSON schemas.

It boots, accepts the UpdateFirmware the server sends, reports Downloading, Downloaded,
Installing and Installed with the request's id, prints `OK installed <location>` and exits 0;
any deviation exits 1.

usage: ocpp201_firmware.py URL STATION_ID PASSWORD
"""

import asyncio
import base64
import sys

import websockets
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


class FirmwareStation(ChargePoint):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.done = asyncio.Event()
        self.location = None

    @on(Action.update_firmware)
    def on_update_firmware(self, request_id, firmware, retries=None, retry_interval=None, **kwargs):
        self.location = firmware["location"]
        return call_result.UpdateFirmware(status="Accepted")

    @after(Action.update_firmware)
    async def after_update_firmware(self, request_id, firmware, **kwargs):
        for status in ("Downloading", "Downloaded", "Installing", "Installed"):
            await self.call(call.FirmwareStatusNotification(status=status, request_id=request_id))
        print(f"OK installed {self.location}", flush=True)
        self.done.set()


async def main() -> None:
    url, station_id, password = sys.argv[1:4]
    auth = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    async with websockets.connect(
        f"{url}/{station_id}",
        subprotocols=["ocpp2.0.1"],
        additional_headers={"Authorization": f"Basic {auth}"},
        open_timeout=10,
    ) as ws:
        cs = FirmwareStation(station_id, ws, response_timeout=10)
        listener = asyncio.create_task(cs.start())
        try:
            boot = await cs.call(call.BootNotification(
                charging_station={"model": "PyModel", "vendor_name": "PyVendor"}, reason="PowerUp",
            ))
            check(boot.status == "Accepted", f"boot {boot}")
            print("OK booted", flush=True)
            await asyncio.wait_for(cs.done.wait(), timeout=60)
            await asyncio.sleep(0.2)
        finally:
            listener.cancel()


if __name__ == "__main__":
    asyncio.run(main())
