"""A 1.6 charge point built with the third-party `ocpp` package (mobilityhouse) that keeps a
local authorization list the way the specification says (section 5.15 SendLocalList, 5.10
GetLocalListVersion), used by the test suite as an independent peer. The package checks every
message both ways against the official OCPP 1.6 JSON schemas.

It boots with an empty list (version 0), answers GetLocalListVersion with the version it holds,
applies Full and Differential updates (a differential entry without idTagInfo removes the tag;
an update whose version is not above the one held is refused with VersionMismatch), prints the
list after each update (`OK list <version>: <tag>=<status> ...`) and exits 0 after UPDATES of them.

usage: ocpp16_local_list.py URL CHARGER_ID PASSWORD UPDATES
"""

import asyncio
import base64
import sys

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, RegistrationStatus


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


class ListChargePoint(ChargePoint):
    def __init__(self, *args, updates, **kwargs):
        super().__init__(*args, **kwargs)
        self.version = 0
        self.entries = {}
        self.updates_left = updates
        self.done = asyncio.Event()

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self, **kwargs):
        return call_result.GetLocalListVersion(list_version=self.version)

    @on(Action.send_local_list)
    def on_send_local_list(self, list_version, update_type, local_authorization_list=None, **kwargs):
        items = local_authorization_list or []
        if update_type == "Differential" and list_version <= self.version:
            return call_result.SendLocalList(status="VersionMismatch")
        if update_type == "Full":
            self.entries = {}
        for item in items:
            info = item.get("id_tag_info")
            if info is None:
                self.entries.pop(item["id_tag"], None)
            else:
                self.entries[item["id_tag"]] = info["status"]
        self.version = list_version
        listed = " ".join(f"{tag}={status}" for tag, status in sorted(self.entries.items()))
        print(f"OK list {self.version}: {listed}", flush=True)
        self.updates_left -= 1
        if self.updates_left == 0:
            self.done.set()
        return call_result.SendLocalList(status="Accepted")


async def main() -> None:
    url, charger_id, password, updates = sys.argv[1:5]
    auth = base64.b64encode(f"{charger_id}:{password}".encode()).decode()
    async with websockets.connect(
        f"{url}/{charger_id}",
        subprotocols=["ocpp1.6"],
        additional_headers={"Authorization": f"Basic {auth}"},
        open_timeout=10,
    ) as ws:
        cp = ListChargePoint(charger_id, ws, updates=int(updates), response_timeout=10)
        listener = asyncio.create_task(cp.start())
        try:
            boot = await cp.call(call.BootNotification(charge_point_model="PyModel", charge_point_vendor="PyVendor"))
            check(boot.status == RegistrationStatus.accepted, f"boot {boot}")
            print("OK booted", flush=True)
            await asyncio.wait_for(cp.done.wait(), timeout=60)
            # let the last answer leave before the socket closes
            await asyncio.sleep(0.2)
        finally:
            listener.cancel()


if __name__ == "__main__":
    asyncio.run(main())
