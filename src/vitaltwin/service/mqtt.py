"""MQTT in: device gateways publish observations to a broker (Mosquitto), the service subscribes
and puts them on the bus like any other input.

A message is JSON, one record or a list of records in the shape of ``POST /v1/observations``
(``patient_id``, ``time``, ``code``, ``value``, ``unit``[, ``device``, ``comparator``,
``status``, ``method``]). Subscribed with QoS 1 (the broker redelivers what the service did not
acknowledge); a payload that is not JSON is put on the bus all the same and quarantined with
the reason, so every message leaves a trace. The subscriber reconnects when the broker goes
away.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from ssl import SSLContext
from typing import Any

from vitaltwin.interop import json_object
from vitaltwin.service.bus import Bus
from vitaltwin.service.ingest import envelope

log = logging.getLogger("vitaltwin.service")


def publish_payload(bus: Bus, payload: bytes, topic: str) -> int:
    """Put one MQTT payload on the bus, one message per patient; returns how many."""
    source = f"mqtt:{topic}"
    parsed = json_object(b'{"r":' + payload + b"}") if payload.strip() else "empty message"
    if isinstance(parsed, str):  # not JSON: one record the ingest quarantines with the reason
        raw = payload[:200].decode("utf-8", "replace")
        bus.publish("unknown", envelope("rejected", source, {"reason": parsed, "raw": raw}))
        return 1
    records = parsed["r"] if isinstance(parsed["r"], list) else [parsed["r"]]
    by_patient: dict[str, list[Any]] = defaultdict(list)
    for r in records:
        key = str(r.get("patient_id") or "unknown") if isinstance(r, dict) else "unknown"
        by_patient[key].append(r)
    for key, items in by_patient.items():
        bus.publish(key, envelope("records", source, items))
    return len(by_patient)


async def subscribe(
    bus: Bus,
    host: str,
    port: int = 1883,
    topic: str = "vitaltwin/observations/#",
    ready: asyncio.Event | None = None,
    reconnect_s: float = 2.0,
    tls: SSLContext | None = None,
    login: tuple[str, str] | None = None,
) -> None:
    """Subscribe until cancelled, putting every message on the bus; over TLS with ``tls`` (a
    client context trusting the broker's authority, with the service's client certificate for
    mutual TLS), signing in to the broker with ``login`` (user name, password) when given."""
    import aiomqtt

    while True:
        try:
            user, password = login if login is not None else (None, None)
            async with aiomqtt.Client(host, port, identifier=None, tls_context=tls,
                                      username=user, password=password) as client:  # fmt: skip
                await client.subscribe(topic, qos=1)
                log.info("mqtt subscribed", extra={"fields": {"broker": f"{host}:{port}",
                                                              "topic": topic}})  # fmt: skip
                if ready is not None:
                    ready.set()
                async for message in client.messages:
                    body = message.payload
                    data = body if isinstance(body, bytes) else str(body).encode()
                    publish_payload(bus, data, str(message.topic))
        except aiomqtt.MqttError as exc:
            log.warning("mqtt: %s; reconnecting in %.0f s", exc, reconnect_s)
            await asyncio.sleep(reconnect_s)
