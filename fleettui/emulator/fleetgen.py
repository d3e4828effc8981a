"""Deterministic generation of a realistic emulated fleet, and its TOML config.

``generate_fleet`` invents a multi-site company (sites in cities around the
world, each with its IANA time zone and street address), the ZKTeco terminals
installed at each site (real model identities, serials, MACs, one loopback
address per device), and the employees enrolled on them with their shifts.
``config_text``/``write_config`` turn that into the ``[[sites]]``/``[[devices]]``
TOML that fleettui itself reads, so the emulator and the app agree on the fleet.

Everything is a pure function of the seed: the same arguments always give the
same fleet, byte for byte. Nothing here touches the network or the clock.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import time
from functools import partial
from pathlib import Path
from typing import TypeVar

from fleettui.emulator.device import DeviceConfig, Profile

__all__ = [
    "ADMIN_PRIVILEGE",
    "CITIES",
    "MODELS",
    "SHIFTS",
    "WORKDAYS",
    "City",
    "DeviceSpec",
    "Employee",
    "FleetSpec",
    "Model",
    "Shift",
    "SiteSpec",
    "config_text",
    "generate_fleet",
    "write_config",
]

_T = TypeVar("_T")

# --- catalogues --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class City:
    """A city a site can be in: its IANA zone and a few real street names."""

    name: str
    timezone: str
    streets: tuple[str, ...]


#: Cities spread over every inhabited continent; some zones observe DST
#: (Europe/*, America/New_York, Australia/Sydney, Africa/Cairo, ...) and most
#: do not (Africa/Lagos, Asia/Kolkata, America/Sao_Paulo, Asia/Kathmandu, ...).
CITIES: tuple[City, ...] = (
    City("Casablanca", "Africa/Casablanca", ("Boulevard Zerktouni", "Route de Rabat")),
    City("Tangier", "Africa/Casablanca", ("Avenue Mohammed VI", "Zone Franche Gzenaya")),
    City("Paris", "Europe/Paris", ("Rue de Rivoli", "Avenue de Flandre")),
    City("Lyon", "Europe/Paris", ("Rue de la Republique", "Avenue Jean Jaures")),
    City("London", "Europe/London", ("Commercial Road", "Great West Road")),
    City("Manchester", "Europe/London", ("Trafford Park Road", "Oxford Road")),
    City("Madrid", "Europe/Madrid", ("Calle de Alcala", "Avenida de Andalucia")),
    City("Berlin", "Europe/Berlin", ("Frankfurter Allee", "Am Borsigturm")),
    City("Warsaw", "Europe/Warsaw", ("Aleje Jerozolimskie", "ulica Marynarska")),
    City("Istanbul", "Europe/Istanbul", ("Buyukdere Caddesi", "Basin Ekspres Yolu")),
    City("Lagos", "Africa/Lagos", ("Awolowo Road", "Apapa-Oshodi Expressway")),
    City("Accra", "Africa/Accra", ("Independence Avenue", "Spintex Road")),
    City("Dakar", "Africa/Dakar", ("Route de Rufisque", "Avenue Cheikh Anta Diop")),
    City("Nairobi", "Africa/Nairobi", ("Mombasa Road", "Enterprise Road")),
    City("Addis Ababa", "Africa/Addis_Ababa", ("Bole Road", "Africa Avenue")),
    City("Cairo", "Africa/Cairo", ("Salah Salem Street", "Ring Road")),
    City("Johannesburg", "Africa/Johannesburg", ("Main Reef Road", "Jan Smuts Avenue")),
    City("Dubai", "Asia/Dubai", ("Sheikh Zayed Road", "Al Khail Road")),
    City("Riyadh", "Asia/Riyadh", ("King Fahd Road", "Al Kharj Road")),
    City("Karachi", "Asia/Karachi", ("Shahrah-e-Faisal", "Korangi Road")),
    City("Mumbai", "Asia/Kolkata", ("Andheri-Kurla Road", "LBS Marg")),
    City("Bengaluru", "Asia/Kolkata", ("Hosur Road", "Outer Ring Road")),
    City("Kathmandu", "Asia/Kathmandu", ("Durbar Marg", "Ring Road, Balaju")),
    City("Dhaka", "Asia/Dhaka", ("Airport Road", "Tejgaon Link Road")),
    City("Bangkok", "Asia/Bangkok", ("Sukhumvit Road", "Bang Na-Trat Road")),
    City("Ho Chi Minh City", "Asia/Ho_Chi_Minh", ("Nguyen Van Linh", "Le Duan Street")),
    City("Jakarta", "Asia/Jakarta", ("Jalan Gatot Subroto", "Jalan Raya Cakung")),
    City("Manila", "Asia/Manila", ("Ayala Avenue", "EDSA")),
    City("Singapore", "Asia/Singapore", ("Tuas Avenue", "Jurong Port Road")),
    City("Tokyo", "Asia/Tokyo", ("Harumi-dori", "Kaigan-dori")),
    City("Sydney", "Australia/Sydney", ("Parramatta Road", "Botany Road")),
    City("Perth", "Australia/Perth", ("Great Eastern Highway", "Welshpool Road")),
    City("Auckland", "Pacific/Auckland", ("Great South Road", "Queen Street")),
    City("New York", "America/New_York", ("Atlantic Avenue", "Grand Street")),
    City("Chicago", "America/Chicago", ("South Halsted Street", "West Fulton Street")),
    City("Los Angeles", "America/Los_Angeles", ("Alameda Street", "Wilshire Boulevard")),
    City("Toronto", "America/Toronto", ("Dundas Street West", "Kennedy Road")),
    City("Mexico City", "America/Mexico_City", ("Avenida Insurgentes Sur", "Calzada Vallejo")),
    City("Bogota", "America/Bogota", ("Avenida El Dorado", "Carrera Septima")),
    City("Lima", "America/Lima", ("Avenida Argentina", "Avenida Javier Prado")),
    City("Sao Paulo", "America/Sao_Paulo", ("Avenida Paulista", "Marginal Tiete")),
    City("Santiago", "America/Santiago", ("Avenida Providencia", "Camino a Melipilla")),
    City("Buenos Aires", "America/Argentina/Buenos_Aires", ("Avenida Corrientes", "Av. Roca")),
)


@dataclass(frozen=True, slots=True)
class Shift:
    """A work shift in site-local time. ``end <= start`` means it ends the next day."""

    name: str
    start: time
    end: time

    @property
    def crosses_midnight(self) -> bool:
        """Whether the shift ends on the day after it starts (a night shift)."""
        return self.end <= self.start


def _t(hhmm: str) -> time:
    return time.fromisoformat(hhmm)


#: The shifts of each site kind, with how often employees are on each.
SHIFTS: dict[str, tuple[tuple[Shift, float], ...]] = {
    "office": (
        (Shift("Office", _t("08:00"), _t("17:00")), 0.75),
        (Shift("Office early", _t("07:30"), _t("16:30")), 0.15),
        (Shift("Office late", _t("09:00"), _t("18:00")), 0.10),
    ),
    "warehouse": (
        (Shift("Morning", _t("06:00"), _t("14:00")), 0.40),
        (Shift("Afternoon", _t("14:00"), _t("22:00")), 0.35),
        (Shift("Night", _t("22:00"), _t("06:00")), 0.25),
    ),
    "factory": (
        (Shift("Morning", _t("06:00"), _t("14:00")), 0.38),
        (Shift("Afternoon", _t("14:00"), _t("22:00")), 0.34),
        (Shift("Night", _t("22:00"), _t("06:00")), 0.28),
    ),
    "farm": (
        (Shift("Field morning", _t("05:00"), _t("13:00")), 0.65),
        (Shift("Field afternoon", _t("13:00"), _t("19:00")), 0.35),
    ),
    "store": (
        (Shift("Store opening", _t("09:00"), _t("18:00")), 0.55),
        (Shift("Store closing", _t("12:00"), _t("21:00")), 0.45),
    ),
    "clinic": (
        (Shift("Clinic day", _t("07:00"), _t("19:00")), 0.60),
        (Shift("Clinic night", _t("19:00"), _t("07:00")), 0.40),
    ),
}

#: Weekdays (Monday = 0) on which a shift of each site kind starts.
WORKDAYS: dict[str, frozenset[int]] = {
    "office": frozenset(range(5)),
    "warehouse": frozenset(range(6)),
    "factory": frozenset(range(6)),
    "farm": frozenset(range(7)),
    "store": frozenset(range(7)),
    "clinic": frozenset(range(7)),
}

#: How often each kind of site appears after the head office, and how many
#: terminals it tends to need relative to the others.
_KIND_WEIGHT: dict[str, float] = {
    "office": 0.22,
    "warehouse": 0.22,
    "store": 0.20,
    "factory": 0.14,
    "farm": 0.11,
    "clinic": 0.11,
}
_KIND_SIZE: dict[str, float] = {
    "office": 1.5,
    "warehouse": 3.0,
    "factory": 3.5,
    "store": 1.0,
    "farm": 1.0,
    "clinic": 1.5,
}
_KIND_TITLE: dict[str, str] = {
    "office": "Office",
    "warehouse": "Warehouse",
    "factory": "Plant",
    "farm": "Farm",
    "store": "Store",
    "clinic": "Clinic",
}
_KIND_NUMBER_RANGE: dict[str, tuple[int, int]] = {
    "office": (1, 250),
    "warehouse": (100, 4800),
    "factory": (200, 9000),
    "farm": (4, 60),
    "store": (1, 900),
    "clinic": (2, 400),
}


@dataclass(frozen=True, slots=True)
class Model:
    """A real ZKTeco terminal model: identity strings, formats, capacities."""

    firmware: str
    platform: str
    device_name: str
    serial_prefix: str
    users_cap: int
    fingers_cap: int
    records_cap: int
    face_version: int | None = None
    faces_cap: int = 0
    black_and_white: bool = False

    def profile(self) -> Profile:
        """A fresh emulator ``Profile`` for one terminal of this model."""
        bw = self.black_and_white
        return Profile(
            firmware=self.firmware,
            platform=self.platform,
            device_name=self.device_name,
            fp_version=10,
            face_version=self.face_version,
            pin_width=5 if bw else 9,
            user_format=28 if bw else 72,
            record_format=16 if bw else 40,
            users_cap=self.users_cap,
            fingers_cap=self.fingers_cap,
            records_cap=self.records_cap,
            faces_cap=self.faces_cap,
            when_full="overwrite" if bw else "reject",
            reboot_s=35.0 if bw else 25.0,
        )


#: Terminal models by device name. Black-and-white models talk UDP.
MODELS: dict[str, Model] = {
    m.device_name: m
    for m in (
        Model("Ver 6.60 Apr 26 2016", "ZMM210_TFT", "F18/ID", "DGD",
              5000, 3000, 100_000, face_version=7, faces_cap=400),
        Model("Ver 6.60 May 25 2018", "JZ4725_TFT", "K40/ID", "A7K", 1000, 1000, 80_000),
        Model("Ver 6.60 Jun 16 2015", "JZ4725_TFT", "K14", "AIOR", 3000, 3000, 100_000),
        Model("Ver 6.81 Apr 28 2015", "ZEM760_TFT", "F19", "OIN",
              3000, 3000, 100_000, face_version=7, faces_cap=400),
        Model("Ver 6.60 May 14 2018", "ZMM200_TFT", "iClock700/ID", "BHXZ",
              50_000, 50_000, 800_000, face_version=7, faces_cap=1200),
        Model("Ver 6.60 Oct 8 2019", "ZMM200_TFT", "G2", "CKJM",
              20_000, 50_000, 200_000, face_version=7, faces_cap=1200),
        Model("Ver 6.60 Jul  1 2019", "ZLM60_TFT", "TM-616", "AJYS", 3000, 3000, 100_000),
        Model("Ver 6.70 May 21 2013", "ZEM560_TFT", "FingerPass TM", "OGT",
              30_000, 2200, 50_000, black_and_white=True),
        Model("Ver 6.60 Mar 18 2013", "ZEM560", "MA300", "ALB",
              30_000, 2200, 50_000, black_and_white=True),
    )
}  # fmt: skip

#: Which TFT models each kind of site buys, with weights.
_KIND_MODELS: dict[str, tuple[tuple[str, float], ...]] = {
    "office": (("F18/ID", 4), ("iClock700/ID", 3), ("G2", 3), ("K40/ID", 2), ("F19", 1)),
    "warehouse": (("F18/ID", 3), ("K14", 2), ("F19", 2), ("TM-616", 2), ("G2", 1)),
    "factory": (("F18/ID", 3), ("iClock700/ID", 2), ("F19", 2), ("TM-616", 2), ("K14", 1)),
    "farm": (("K40/ID", 3), ("TM-616", 2), ("K14", 2)),
    "store": (("K40/ID", 4), ("K14", 3), ("F18/ID", 2)),
    "clinic": (("G2", 3), ("F18/ID", 3), ("iClock700/ID", 2)),
}
_BW_MODELS = ("FingerPass TM", "MA300")
_BW_SHARE = 0.10
_COMM_KEY_SHARE = 1 / 15

_FIRST_NAMES: tuple[str, ...] = (
    "Amina", "Youssef", "Fatima", "Omar", "Salma", "Karim", "Leila", "Hamza", "Nadia",
    "Mehdi", "Chinedu", "Ngozi", "Tunde", "Aisha", "Emeka", "Folake", "Kwame", "Akosua",
    "Wanjiru", "Otieno", "Achieng", "Baraka", "Zanele", "Thabo", "Lindiwe", "Mariam",
    "Ahmed", "Hassan", "Noura", "Rashid", "Priya", "Arjun", "Ananya", "Rahul", "Sneha",
    "Vikram", "Deepa", "Sanjay", "Ayesha", "Imran", "Farhana", "Tanvir", "Siti", "Budi",
    "Dewi", "Agus", "Putri", "Maria", "Jose", "Juan", "Ana", "Miguel", "Lucia", "Carlos",
    "Gabriela", "Joao", "Beatriz", "Thiago", "Camila", "Rafael", "Mei", "Wei", "Hiroshi",
    "Yuki", "Minh", "Linh", "Somchai", "Nattaya", "Angelica", "Mark", "Jasmine", "Paolo",
    "Emma", "Liam", "Olivia", "Noah", "Sophie", "Lucas", "Chloe", "Hugo", "Ines", "Louis",
    "Hannah", "Jonas", "Lena", "Piotr", "Agnieszka", "Mehmet", "Elif", "Emre", "Zeynep",
    "James", "Sarah", "David", "Grace", "Michael", "Aroha", "Tane", "Dolores", "Andres",
    "Sipho", "Yaw", "Abena", "Moussa", "Awa", "Mamadou", "Tigist", "Dawit", "Selam",
)  # fmt: skip
_LAST_NAMES: tuple[str, ...] = (
    "El Amrani", "Benali", "Alaoui", "Tazi", "Idrissi", "Okafor", "Adeyemi", "Balogun",
    "Nwosu", "Mensah", "Boateng", "Owusu", "Kamau", "Mwangi", "Odhiambo", "Njoroge",
    "Dlamini", "Nkosi", "Khumalo", "Diallo", "Ndiaye", "Sow", "Bekele", "Tesfaye",
    "Haile", "Mansour", "Farouk", "Al Mansoori", "Al Qahtani", "Haddad", "Sharma",
    "Patel", "Iyer", "Reddy", "Gupta", "Nair", "Khan", "Hossain", "Rahman", "Chowdhury",
    "Santoso", "Wijaya", "Hidayat", "Santos", "Reyes", "Cruz", "Garcia", "Rodriguez",
    "Hernandez", "Lopez", "Silva", "Oliveira", "Souza", "Pereira", "Ferreira", "Rojas",
    "Vargas", "Nguyen", "Tran", "Pham", "Srisuk", "Wong", "Tanaka", "Sato", "Suzuki",
    "Smith", "Johnson", "Brown", "Williams", "Taylor", "Martin", "Bernard", "Dubois",
    "Moreau", "Laurent", "Muller", "Schmidt", "Fischer", "Kowalski", "Nowak", "Yilmaz",
    "Kaya", "Demir", "O'Brien", "MacLeod", "Wilson", "Thompson", "Ngata", "Walker",
)  # fmt: skip

#: Privilege byte of a device administrator (pyzk's const.USER_ADMIN).
ADMIN_PRIVILEGE = 14
_FIRST_USER_ID = 1001
_HOST_MIN = int(ipaddress.IPv4Address("127.0.0.1"))
_HOST_MAX = int(ipaddress.IPv4Address("127.255.255.254"))
_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")

# --- the spec ------------------------------------------------------------------


@dataclass(slots=True)
class SiteSpec:
    """One site of the company: where it is, its time zone, what kind of place."""

    id: str
    name: str
    timezone: str
    address: str
    kind: str

    @property
    def workdays(self) -> frozenset[int]:
        """Weekdays (Monday = 0) on which shifts start at this site."""
        return WORKDAYS.get(self.kind, WORKDAYS["office"])


@dataclass(slots=True)
class DeviceSpec:
    """One emulated terminal: the emulator's config, its site and transport."""

    config: DeviceConfig
    site_id: str
    #: "tcp", or "udp" for older black-and-white models; "push" for a push terminal
    transport: str
    #: the push firmware profile (push_wire.PROFILES) of a push terminal
    push_profile: str | None = None

    @property
    def id(self) -> str:
        """The device id (same as ``config.id``)."""
        return self.config.id


@dataclass(slots=True)
class Employee:
    """A person enrolled on the terminals of one site, and the shift they work."""

    user_id: str
    name: str
    card: int
    shift: Shift
    privilege: int = 0


@dataclass
class FleetSpec:
    """A whole emulated fleet: sites, devices, and each site's employees.

    ``employees`` maps a site id to that site's employees; every employee of a
    site is enrolled on every device of the site. ``homes`` optionally maps a
    site id and a user id to the device that person mostly punches on; when an
    entry is missing, ``home_device`` picks one by a stable hash.

    Treat a spec as immutable once built: the lookups are indexed at creation.
    """

    sites: list[SiteSpec]
    devices: list[DeviceSpec]
    employees: dict[str, list[Employee]]
    homes: dict[str, dict[str, str]] = field(default_factory=dict)
    #: the seed it was generated from, if any (written in the config header)
    seed: int | None = None

    def __post_init__(self) -> None:
        self._sites = {s.id: s for s in self.sites}
        self._devices = {d.config.id: d for d in self.devices}
        self._by_site: dict[str, list[DeviceSpec]] = {s.id: [] for s in self.sites}
        for d in self.devices:
            self._by_site.setdefault(d.site_id, []).append(d)

    def site(self, site_id: str) -> SiteSpec:
        """The site with this id (KeyError if there is none)."""
        return self._sites[site_id]

    def device(self, device_id: str) -> DeviceSpec:
        """The device with this id (KeyError if there is none)."""
        return self._devices[device_id]

    def devices_at(self, site_id: str) -> list[DeviceSpec]:
        """The devices of one site, in config order."""
        return self._by_site.get(site_id, [])

    def employees_for_device(self, device_id: str) -> list[Employee]:
        """The employees enrolled on a device: all the employees of its site."""
        return self.employees.get(self.device(device_id).site_id, [])

    def home_device(self, site_id: str, user_id: str) -> str:
        """The id of the device this employee mostly punches on."""
        home = self.homes.get(site_id, {}).get(user_id)
        if home is not None:
            return home
        devices = self.devices_at(site_id)
        if not devices:
            raise KeyError(f"site {site_id!r} has no devices")
        index = zlib.crc32(f"{site_id}:{user_id}".encode()) % len(devices)
        return devices[index].config.id


# --- generation ----------------------------------------------------------------


def generate_fleet(
    sites: int,
    devices: int,
    *,
    seed: int = 1,
    base_address: str = "127.0.1.1",
    port: int = 4370,
    employees_per_device: tuple[int, int] = (15, 60),
) -> FleetSpec:
    """Invent a fleet of ``devices`` terminals over ``sites`` sites, from ``seed``.

    Sized for 1..50 sites and 1..2000 devices (larger fleets work; cities and
    names then repeat).

    The first site is the head office; the others are a mix of warehouses,
    factories, stores, farms, clinics and offices. Every site gets at least one
    device, and big sites (factories, warehouses) get more. Device ``i`` listens
    on ``base_address + i`` (skipping .0 and .255 host octets) at ``port``.
    Each device brings ``employees_per_device`` (inclusive range) employees to
    its site, capped by the smallest user capacity among the site's devices.
    """
    if sites < 1:
        raise ValueError(f"a fleet needs at least one site, got {sites}")
    if devices < sites:
        raise ValueError(
            f"every site needs at least one device: {devices} device(s) for {sites} sites"
        )
    lo, hi = employees_per_device
    if not 0 <= lo <= hi:
        raise ValueError(f"employees_per_device must be (low, high) with 0 <= low <= high, "
                         f"got {employees_per_device}")
    if not 0 <= port <= 65535:
        # 0: each device gets a free port when it starts (tests, side-by-side fleets)
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    hosts = _hosts(base_address, devices)

    rng = random.Random(seed)
    site_specs = _make_sites(rng, sites)
    per_site = _spread_devices(rng, site_specs, devices)

    device_specs: list[DeviceSpec] = []
    serials: set[str] = set()
    macs: set[str] = set()
    for site, count in zip(site_specs, per_site, strict=True):
        for index in range(1, count + 1):
            model = _pick_model(rng, site.kind)
            device_id = f"dev_{site.id.replace('-', '_')}_{index:02d}"
            comm_key = rng.randint(100_000, 999_999) if rng.random() < _COMM_KEY_SHARE else 0
            config = DeviceConfig(
                id=device_id,
                serial=_unique(rng, serials, partial(_serial, model=model)),
                host=hosts[len(device_specs)],
                port=port,
                timezone=site.timezone,
                comm_key=comm_key,
                mac=_unique(rng, macs, _mac),
                profile=model.profile(),
            )
            transport = "udp" if model.black_and_white else "tcp"
            device_specs.append(DeviceSpec(config=config, site_id=site.id, transport=transport))

    spec_devices = FleetSpec(site_specs, device_specs, {})
    employees: dict[str, list[Employee]] = {}
    homes: dict[str, dict[str, str]] = {}
    cards: set[int] = set()
    for site in site_specs:
        site_devices = spec_devices.devices_at(site.id)
        employees[site.id], homes[site.id] = _make_employees(
            rng, site, site_devices, employees_per_device, cards
        )
    return FleetSpec(site_specs, device_specs, employees, homes, seed=seed)


#: push firmware profiles handed out in turn to the devices made push terminals
PUSH_PROFILE_MIX = ("push2", "biodata", "legacy", "push2-resend")


def make_push(spec: FleetSpec, count: int, *, seed: int = 1) -> list[str]:
    """Turn ``count`` devices of ``spec`` into push terminals; returns their ids.

    Picked from ``seed`` alone (so the same seed picks the same devices), one
    site at a time in a shuffled site order, so push terminals are spread over
    the sites; firmware profiles (5/7/10 ATTLOG fields, legacy stamps, pushver)
    are handed out in turn. The other devices are left exactly as they were.
    """
    if not 0 <= count <= len(spec.devices):
        raise ValueError(f"--push: expected 0 to {len(spec.devices)} devices, got {count}")
    rng = random.Random(f"push:{seed}")
    pools = {s.id: list(spec.devices_at(s.id)) for s in spec.sites}
    for pool in pools.values():
        rng.shuffle(pool)
    order = [s.id for s in spec.sites]
    rng.shuffle(order)
    chosen: list[DeviceSpec] = []
    while len(chosen) < count:
        for site_id in order:
            if pools[site_id] and len(chosen) < count:
                chosen.append(pools[site_id].pop())
    start = rng.randrange(len(PUSH_PROFILE_MIX))
    for i, d in enumerate(chosen):
        d.transport = "push"
        d.push_profile = PUSH_PROFILE_MIX[(start + i) % len(PUSH_PROFILE_MIX)]
    return [d.id for d in chosen]


def _hosts(base_address: str, count: int) -> list[str]:
    """``count`` loopback addresses from ``base_address`` on, skipping .0 and .255."""
    try:
        base = ipaddress.IPv4Address(base_address)
    except ValueError as exc:
        raise ValueError(f"base_address {base_address!r} is not an IPv4 address") from exc
    if base not in _LOOPBACK:
        raise ValueError(f"base_address {base_address} is not in 127.0.0.0/8")
    out: list[str] = []
    n = max(int(base), _HOST_MIN)
    while len(out) < count:
        if n > _HOST_MAX:
            raise ValueError(
                f"{count} devices from {base_address} would run past 127.255.255.254"
            )
        if n & 0xFF not in (0, 255):
            out.append(str(ipaddress.IPv4Address(n)))
        n += 1
    return out


def _letters(n: int) -> str:
    """0 → "a", 25 → "z", 26 → "aa", ... (spreadsheet column letters)."""
    out = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(ord("a") + r) + out
    return out


def _make_sites(rng: random.Random, count: int) -> list[SiteSpec]:
    kinds = list(_KIND_WEIGHT)
    weights = list(_KIND_WEIGHT.values())
    site_kinds = ["office", *rng.choices(kinds, weights, k=count - 1)]
    cities = list(CITIES)
    rng.shuffle(cities)
    per_kind: dict[str, int] = {}
    out: list[SiteSpec] = []
    for i, kind in enumerate(site_kinds):
        n = per_kind.get(kind, 0)
        per_kind[kind] = n + 1
        letter = _letters(n)
        city = cities[i % len(cities)]
        if i == 0:
            name = f"Head Office - {city.name}"
        else:
            name = f"{_KIND_TITLE[kind]} {letter.upper()} - {city.name}"
        lo, hi = _KIND_NUMBER_RANGE[kind]
        street = rng.choice(city.streets)
        if kind == "farm":  # out of town: a kilometre marker on the road
            address = f"Km {rng.randint(lo, hi)}, {street}, {city.name}"
        else:
            address = f"{rng.randint(lo, hi)} {street}, {city.name}"
        out.append(SiteSpec(f"{kind}-{letter}", name, city.timezone, address, kind))
    return out


def _spread_devices(rng: random.Random, sites: list[SiteSpec], total: int) -> list[int]:
    """How many devices each site gets: one each, the rest by size, unevenly."""
    counts = [1] * len(sites)
    weights = [_KIND_SIZE[s.kind] * rng.lognormvariate(0.0, 0.5) for s in sites]
    for i in rng.choices(range(len(sites)), weights, k=total - len(sites)):
        counts[i] += 1
    return counts


def _pick_model(rng: random.Random, kind: str) -> Model:
    if rng.random() < _BW_SHARE:
        return MODELS[rng.choice(_BW_MODELS)]
    names, weights = zip(*_KIND_MODELS[kind], strict=True)
    return MODELS[rng.choices(names, weights)[0]]


def _serial(rng: random.Random, model: Model) -> str:
    digits = 13 - len(model.serial_prefix)
    return model.serial_prefix + "".join(rng.choices("0123456789", k=digits))


def _mac(rng: random.Random) -> str:
    tail = rng.randint(1, 0xFFFFFE)
    return "00:17:61:" + ":".join(f"{(tail >> s) & 0xFF:02X}" for s in (16, 8, 0))


def _unique(rng: random.Random, seen: set[_T], make: Callable[[random.Random], _T]) -> _T:
    """Draw ``make(rng)`` until it gives a value not in ``seen``; remember it."""
    while True:
        value = make(rng)
        if value not in seen:
            seen.add(value)
            return value


def _make_employees(
    rng: random.Random,
    site: SiteSpec,
    site_devices: Sequence[DeviceSpec],
    employees_per_device: tuple[int, int],
    cards: set[int],
) -> tuple[list[Employee], dict[str, str]]:
    """The employees of one site, and each one's home device."""
    lo, hi = employees_per_device
    cap = min(d.config.profile.users_cap for d in site_devices)
    shifts, shift_weights = zip(*SHIFTS[site.kind], strict=True)
    employees: list[Employee] = []
    homes: dict[str, str] = {}
    for device in site_devices:
        for _ in range(rng.randint(lo, hi)):
            if len(employees) >= cap:
                break
            user_id = str(_FIRST_USER_ID + len(employees))
            card = _unique(rng, cards, lambda r: r.randint(10_000_000, 0xFFFFFFFF))
            employees.append(
                Employee(user_id, _name(rng), card, rng.choices(shifts, shift_weights)[0])
            )
            homes[user_id] = device.config.id
    # site managers and HR: one admin per ~40 people, among the first enrolled
    if employees:
        admins = max(1, len(employees) // 40)
        pool = employees[: max(admins, min(len(employees), 10))]
        for e in rng.sample(pool, admins):
            e.privilege = ADMIN_PRIVILEGE
    return employees, homes


def _name(rng: random.Random) -> str:
    """A plausible name that fits the 24 bytes of a TFT user record."""
    first = rng.choice(_FIRST_NAMES)
    last = rng.choice(_LAST_NAMES)
    name = f"{first} {last}"
    return name if len(name.encode()) <= 24 else f"{first} {last[0]}."


# --- TOML config ---------------------------------------------------------------


def _toml_str(value: str) -> str:
    """``value`` as a TOML basic string (JSON escaping is valid TOML, plus DEL)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _comment(text: str) -> str:
    """``text`` made safe for a TOML comment (no control characters)."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def config_text(spec: FleetSpec, push_listen: str | None = None) -> str:
    """The fleettui TOML config (``[[sites]]`` and ``[[devices]]``) for a fleet.

    Only the keys fleettui reads are written; what the emulator knows beyond
    them (site kind, device model) appears as comments. ``push_listen``
    (``host:port``, where the push terminals dial) adds the ``[push]`` table
    that turns the listener on.
    """
    seed = "unknown seed" if spec.seed is None else f"seed {spec.seed}"
    lines = [
        f"# Generated by `fleettui emulate` ({seed}): "
        f"{len(spec.sites)} sites, {len(spec.devices)} devices.",
        "# It holds device comm keys, which are secrets: keep this file private.",
        "",
    ]
    if push_listen is not None:
        lines += ["[push]", "enabled = true", f"listen = {_toml_str(push_listen)}", ""]
    for site in spec.sites:
        lines += [
            "[[sites]]",
            f"# kind: {_comment(site.kind)}",
            f"id = {_toml_str(site.id)}",
            f"name = {_toml_str(site.name)}",
            f"timezone = {_toml_str(site.timezone)}",
            f"address = {_toml_str(site.address)}",
            "",
        ]
    for device in spec.devices:
        c = device.config
        p = c.profile
        model = _comment(f"{p.device_name}, {p.platform}, {p.firmware}")
        if device.transport == "push":
            # a push terminal dials in: no host or port; its comm key, if it has one, is
            # what it gives in its handshake (pushcommkey)
            site_name = spec.site(device.site_id).name
            lines += [
                "[[devices]]",
                f"# model: {model}; push firmware profile {_comment(device.push_profile or '')}",
                f"id = {_toml_str(c.id)}",
                f"serial = {_toml_str(c.serial)}",
                f"site = {_toml_str(device.site_id)}",
                f"name = {_toml_str(f'{site_name} {p.device_name} {c.id[-2:]} (push)')}",
                'transport = "push"',
                *([f"comm_key = {int(c.comm_key)}"] if c.comm_key else []),
                "",
            ]
            continue
        lines += [
            "[[devices]]",
            f"# model: {model}",
            f"id = {_toml_str(c.id)}",
            f"serial = {_toml_str(c.serial)}",
            f"site = {_toml_str(device.site_id)}",
            f"host = {_toml_str(c.host)}",
            f"port = {int(c.port)}",
            f"transport = {_toml_str(device.transport)}",
            f"comm_key = {int(c.comm_key)}",
            "",
        ]
    return "\n".join(lines)


def write_config(spec: FleetSpec, path: str | Path, push_listen: str | None = None) -> None:
    """Write ``config_text(spec)`` to ``path`` atomically, readable by the owner only.

    The file holds comm keys, so it is created with mode 0o600 (an existing
    file is replaced, never loosened).
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(config_text(spec, push_listen))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
