"""The product article's client functions, verbatim (reference/000_5818b21e89c1736d.txt).

Only line breaks were restored (the reference text lost them), the module-level
example call ``check_fleet_health()`` is left out (a test calls it), and
``API_KEY`` and ``BASE_URL`` are set by the test that imports this module.
The article's status marks are as garbled as in the reference text.
"""
# ruff: noqa: E501, I001, UP017
# (the article's own style, kept as written)

import requests
from datetime import datetime, timezone

API_KEY = "YOUR_API_KEY"
BASE_URL = "https://api.punchconnect.com/v1"


def get_all_devices():
    """Fetch all devices across all sites."""
    resp = requests.get(f"{BASE_URL}/devices",
                        headers={"Authorization": f"Bearer {API_KEY}"})
    resp.raise_for_status()
    return resp.json()["devices"]


def check_fleet_health():
    """Print a fleet health report."""
    devices = get_all_devices()

    # Group by site
    sites = {}
    for d in devices:
        site = d["site"]
        sites.setdefault(site, []).append(d)

    print(f"Fleet Status β {len(devices)} devices across {len(sites)} sites\n")

    for site, devs in sorted(sites.items()):
        online = sum(1 for d in devs if d["status"] == "online")
        total = len(devs)
        status = "β " if online == total else "β οΈ"
        print(f"{status} {site}: {online}/{total} online")

        for d in devs:
            if d["status"] == "offline":
                last = datetime.fromisoformat(d["last_seen"])
                ago = datetime.now(timezone.utc) - last
                print(f" β {d['serial_number']} β offline {ago.seconds // 3600}h {(ago.seconds % 3600) // 60}m")


def site_health_report(site_id: str) -> dict:
    """Get aggregated health for a specific site."""
    resp = requests.get(f"{BASE_URL}/sites/{site_id}/health",
                        headers={"Authorization": f"Bearer {API_KEY}"})
    resp.raise_for_status()
    health = resp.json()

    return {
        "site": health["name"],
        "devices_online": health["online_count"],
        "devices_total": health["total_count"],
        "uptime_30d": health["uptime_percentage"],
        "avg_latency_ms": health["avg_webhook_latency_ms"],
        "punches_today": health["punches_today"],
        "last_punch": health["last_punch_at"]
    }


def restart_all_devices_at_site(site_id: str):
    """Restart every device at a site β useful after firmware updates."""
    resp = requests.get(f"{BASE_URL}/sites/{site_id}",
                        headers={"Authorization": f"Bearer {API_KEY}"})
    devices = resp.json()["devices"]

    results = []
    for device in devices:
        cmd = requests.post(
            f"{BASE_URL}/devices/{device['id']}/commands",
            headers={
                "Authorization": f"Bearer {API_KEY}",
                "Content-Type": "application/json"
            },
            json={
                "command": "restart",
                "idempotency_key": f"restart-{device['id']}-{datetime.now().strftime('%Y%m%d')}"
            }
        )
        results.append({
            "device": device["serial_number"],
            "status": cmd.status_code,
            "queued": cmd.json().get("queued", False)
        })

    return results
