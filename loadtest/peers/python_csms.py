"""A minimal OCPP 1.6 central system built on the third-party Python `ocpp` package
(mobilityhouse) over `websockets`: the benchmark peer for chargegrid (scripts/bench.sh).

It accepts any charger id on subprotocol ocpp1.6 at ws://HOST:PORT/<anything>/<chargerId>, answers
BootNotification (Accepted), Heartbeat and StatusNotification, and keeps nothing else. The
package validates every payload against the OCPP JSON schemas, as chargegrid does.

usage: python_csms.py [--host 127.0.0.1] [--port 9100]
Prints "ready <pid> <port>" on stdout once listening; runs until SIGTERM/SIGINT.
"""

import argparse
import asyncio
import logging
import signal
import sys
from datetime import datetime, timezone

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, RegistrationStatus

HEARTBEAT_INTERVAL = 300


def now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class CentralSystemSide(ChargePoint):
    """The central system's end of one charger connection."""

    @on(Action.boot_notification)
    def on_boot_notification(self, charge_point_vendor, charge_point_model, **kwargs):
        return call_result.BootNotification(
            current_time=now(), interval=HEARTBEAT_INTERVAL, status=RegistrationStatus.accepted
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **kwargs):
        return call_result.Heartbeat(current_time=now())

    @on(Action.status_notification)
    def on_status_notification(self, connector_id, error_code, status, **kwargs):
        return call_result.StatusNotification()


async def on_connect(connection):
    if connection.subprotocol != "ocpp1.6":
        await connection.close(code=1002, reason="ocpp1.6 only")
        return
    charger_id = connection.request.path.rstrip("/").rsplit("/", 1)[-1]
    try:
        await CentralSystemSide(charger_id, connection).start()
    except websockets.exceptions.ConnectionClosed:
        pass


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    # per-message logging would dominate the benchmark
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with websockets.serve(on_connect, args.host, args.port, subprotocols=["ocpp1.6"], backlog=4096):
        print(f"ready {__import__('os').getpid()} {args.port}", flush=True)
        await stop


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
