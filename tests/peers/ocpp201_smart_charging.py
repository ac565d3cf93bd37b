"""A 2.0.1 charging station built with the third-party `ocpp` package (mobilityhouse) that keeps
charging profiles the way the specification's block K describes, used by the test suite to run
the CSMS side of the OCA smart-charging test cases (TC_K_*) against the server. The package
checks every message both ways against the official OCPP 2.0.1 JSON schemas.

The station keeps the profiles it is sent per EVSE (with an external EMS limit of its own on
EVSE 1), and:
- SetChargingProfile: profile id 1500 is answered with a CALLERROR NotSupported (TC_K_15); a
  TxProfile without the running transaction's id is Rejected (TC_K_02); a Recurring profile
  needs its recurrencyKind; anything else is kept and Accepted;
- ClearChargingProfile: by id or by criteria (EVSE, purpose, stack level), never the external
  limit; Unknown when nothing matched (TC_K_05, TC_K_06, TC_K_08);
- GetChargingProfiles: filters by EVSE, id, purpose, stack level and source; NoProfiles when
  nothing matches, else Accepted followed by one ReportChargingProfiles per EVSE and source,
  `tbc` on all but the last (TC_K_29 - TC_K_36, TC_K_52);
- GetCompositeSchedule: the lowest limit in force on the EVSE (or the station for EVSE 0) in
  ampere; Rejected for an EVSE it does not have (TC_K_43, TC_K_44);
- RequestStartTransaction: checks a profile it carries is a TxProfile without a transactionId,
  keeps it for the transaction and starts it (TC_K_37); RequestStopTransaction ends it.
Each check prints a line starting with OK; a soft Reset ends the run (exit 0). Any deviation
exits 1.

usage: ocpp201_smart_charging.py URL STATION_ID PASSWORD
"""

import asyncio
import base64
import sys
from datetime import datetime, timezone

import websockets
from ocpp.exceptions import NotSupportedError
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action

EVSE = {"id": 1, "connector_id": 1}
TRANSACTION = "PY-K-TX"
NOT_SUPPORTED_ID = 1500


def now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr, flush=True)
        sys.exit(1)


def first_limit(profile) -> float:
    return profile["charging_schedule"][0]["charging_schedule_period"][0]["limit"]


class SmartStation(ChargePoint):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # id -> (evse id, profile, source)
        self.profiles = {
            700: (1, {
                "id": 700, "stack_level": 0,
                "charging_profile_purpose": "ChargingStationExternalConstraints",
                "charging_profile_kind": "Absolute",
                "charging_schedule": [{
                    "id": 700, "start_schedule": "2026-01-01T00:00:00Z", "charging_rate_unit": "A",
                    "charging_schedule_period": [{"start_period": 0, "limit": 20.0}],
                }],
            }, "EMS"),
        }
        self.transaction = None
        self.done = asyncio.Event()
        # calls of our own still in flight; the run ends only once they were answered
        self.busy = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def send(self, request):
        self.busy += 1
        self.idle.clear()
        try:
            return await self.call(request)
        finally:
            self.busy -= 1
            if self.busy == 0:
                self.idle.set()

    # ---- SetChargingProfile (K01)
    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, evse_id, charging_profile, **kwargs):
        profile_id = charging_profile["id"]
        purpose = charging_profile["charging_profile_purpose"]
        if profile_id == NOT_SUPPORTED_ID:
            raise NotSupportedError(description="this station does not do that profile")
        if purpose == "TxProfile":
            transaction_id = charging_profile.get("transaction_id")
            if transaction_id is None or transaction_id != self.transaction:
                print(f"OK rejected TxProfile {profile_id} without a running transaction", flush=True)
                return call_result.SetChargingProfile(status="Rejected")
        if charging_profile["charging_profile_kind"] == "Recurring":
            check(charging_profile.get("recurrency_kind") in ("Daily", "Weekly"),
                  f"a Recurring profile without recurrencyKind: {charging_profile}")
            check(charging_profile["charging_schedule"][0].get("start_schedule") is not None,
                  f"a Recurring profile without startSchedule: {charging_profile}")
        if purpose == "ChargingStationMaxProfile":
            check(evse_id == 0, f"a station maximum on EVSE {evse_id}")
        self.profiles[profile_id] = (evse_id, charging_profile, "CSO")
        print(f"OK set {profile_id} {purpose} {charging_profile['charging_profile_kind']} "
              f"on {evse_id} at {first_limit(charging_profile)}", flush=True)
        return call_result.SetChargingProfile(status="Accepted")

    @after(Action.set_charging_profile)
    async def after_set_charging_profile(self, evse_id, charging_profile, **kwargs):
        # a new TxProfile for the running transaction is a renegotiation initiated by the CSMS
        # (TC_K_58): the car answers with a schedule within it
        if charging_profile["charging_profile_purpose"] != "TxProfile" or \
                charging_profile.get("transaction_id") != self.transaction or \
                self.transaction is None:
            return
        limit = first_limit(charging_profile)
        answer = await self.send(call.NotifyEVChargingSchedule(
            time_base=now(), evse_id=evse_id, charging_schedule={
                "id": 1, "charging_rate_unit": "A",
                "charging_schedule_period": [{"start_period": 0, "limit": limit}],
            },
        ))
        check(answer.status == "Accepted", f"the EV's schedule at {limit} A: {answer}")
        print(f"OK EV schedule within {limit}: Accepted", flush=True)

    # ---- ClearChargingProfile (K10)
    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, charging_profile_id=None, charging_profile_criteria=None,
                                  **kwargs):
        criteria = charging_profile_criteria or {}

        def matches(entry):
            evse_id, profile, source = entry
            if source != "CSO":
                return False
            if charging_profile_id is not None:
                return profile["id"] == charging_profile_id
            if "evse_id" in criteria and criteria["evse_id"] != evse_id:
                return False
            if "charging_profile_purpose" in criteria and \
                    criteria["charging_profile_purpose"] != profile["charging_profile_purpose"]:
                return False
            if "stack_level" in criteria and criteria["stack_level"] != profile["stack_level"]:
                return False
            return True

        gone = [pid for pid, entry in self.profiles.items() if matches(entry)]
        for pid in gone:
            del self.profiles[pid]
        status = "Accepted" if gone else "Unknown"
        print(f"OK cleared {sorted(gone)}: {status}", flush=True)
        return call_result.ClearChargingProfile(status=status)

    # ---- GetChargingProfiles (K09)
    def selected(self, evse_id, criterion):
        chosen = []
        for pid, (evse, profile, source) in sorted(self.profiles.items()):
            if evse_id is not None and evse != evse_id:
                continue
            if "charging_profile_id" in criterion and pid not in criterion["charging_profile_id"]:
                continue
            if "charging_profile_purpose" in criterion and \
                    profile["charging_profile_purpose"] != criterion["charging_profile_purpose"]:
                continue
            if "stack_level" in criterion and profile["stack_level"] != criterion["stack_level"]:
                continue
            if "charging_limit_source" in criterion and source not in criterion["charging_limit_source"]:
                continue
            chosen.append((evse, profile, source))
        return chosen

    @on(Action.get_charging_profiles)
    def on_get_charging_profiles(self, request_id, charging_profile, evse_id=None, **kwargs):
        chosen = self.selected(evse_id, charging_profile)
        status = "Accepted" if chosen else "NoProfiles"
        print(f"OK get profiles {request_id}: {status}", flush=True)
        return call_result.GetChargingProfiles(status=status)

    @after(Action.get_charging_profiles)
    async def after_get_charging_profiles(self, request_id, charging_profile, evse_id=None,
                                          **kwargs):
        groups = {}
        for evse, profile, source in self.selected(evse_id, charging_profile):
            groups.setdefault((evse, source), []).append(profile)
        keys = sorted(groups)
        for index, (evse, source) in enumerate(keys):
            last = index == len(keys) - 1
            await self.send(call.ReportChargingProfiles(
                request_id=request_id, charging_limit_source=source, evse_id=evse,
                charging_profile=groups[(evse, source)], tbc=None if last else True,
            ))
        if keys:
            print(f"OK reported {request_id}: {len(keys)} reports", flush=True)

    # ---- GetCompositeSchedule (K08)
    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(self, duration, evse_id, charging_rate_unit=None, **kwargs):
        if evse_id not in (0, 1):
            return call_result.GetCompositeSchedule(status="Rejected")
        limits = [first_limit(p) for (evse, p, _) in self.profiles.values()
                  if evse == 0 or evse == evse_id]
        limit = min(limits) if limits else 32.0
        print(f"OK composite {evse_id}: {limit}", flush=True)
        return call_result.GetCompositeSchedule(status="Accepted", schedule={
            "evse_id": evse_id, "duration": duration, "schedule_start": now(),
            "charging_rate_unit": charging_rate_unit or "A",
            "charging_schedule_period": [{"start_period": 0, "limit": limit}],
        })

    # ---- RequestStartTransaction with a profile (K05 / TC_K_37), RequestStopTransaction
    @on(Action.request_start_transaction)
    def on_request_start(self, id_token, remote_start_id, evse_id=None, charging_profile=None,
                         **kwargs):
        check(charging_profile is not None, "RequestStartTransaction without a chargingProfile")
        check(charging_profile["charging_profile_purpose"] == "TxProfile",
              f"the start's profile is not a TxProfile: {charging_profile}")
        check("transaction_id" not in charging_profile,
              f"the start's profile names a transaction: {charging_profile}")
        print(f"OK remote start with TxProfile {charging_profile['id']} at "
              f"{first_limit(charging_profile)}", flush=True)
        return call_result.RequestStartTransaction(status="Accepted")

    @after(Action.request_start_transaction)
    async def after_request_start(self, id_token, remote_start_id, evse_id=None,
                                  charging_profile=None, **kwargs):
        self.transaction = TRANSACTION
        self.profiles[charging_profile["id"]] = (evse_id or 1, charging_profile, "CSO")
        answer = await self.send(call.TransactionEvent(
            event_type="Started", timestamp=now(), trigger_reason="RemoteStart", seq_no=0,
            transaction_info={"transaction_id": TRANSACTION, "remote_start_id": remote_start_id,
                              "charging_state": "Charging"},
            id_token=id_token, evse=EVSE,
        ))
        check(answer.id_token_info["status"] == "Accepted", f"remote start {answer}")

    @on(Action.request_stop_transaction)
    def on_request_stop(self, transaction_id, **kwargs):
        check(transaction_id == TRANSACTION, f"stop for {transaction_id}")
        return call_result.RequestStopTransaction(status="Accepted")

    @after(Action.request_stop_transaction)
    async def after_request_stop(self, transaction_id, **kwargs):
        self.transaction = None
        # a TxProfile ends with its transaction (K01.FR.05)
        for pid in [pid for pid, (_, p, _) in self.profiles.items()
                    if p["charging_profile_purpose"] == "TxProfile"]:
            del self.profiles[pid]
        await self.send(call.TransactionEvent(
            event_type="Ended", timestamp=now(), trigger_reason="RemoteStop", seq_no=1,
            transaction_info={"transaction_id": TRANSACTION, "stopped_reason": "Remote"},
        ))
        print("OK transaction ended", flush=True)

    # ---- the end of the run
    @on(Action.reset)
    def on_reset(self, type, **kwargs):
        return call_result.Reset(status="Accepted")

    @after(Action.reset)
    async def after_reset(self, type, **kwargs):
        await self.idle.wait()
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
        cs = SmartStation(station_id, ws, response_timeout=10)
        listener = asyncio.create_task(cs.start())
        try:
            boot = await cs.call(call.BootNotification(
                charging_station={"model": "PyModel", "vendor_name": "PyVendor"}, reason="PowerUp",
            ))
            check(boot.status == "Accepted", f"boot {boot}")
            await cs.call(call.StatusNotification(
                timestamp=now(), connector_status="Available", evse_id=1, connector_id=1,
            ))
            print("OK booted", flush=True)
            await asyncio.wait_for(cs.done.wait(), timeout=90)
            print("OK done", flush=True)
        finally:
            listener.cancel()


if __name__ == "__main__":
    asyncio.run(main())
