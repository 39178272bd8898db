"""Where a scan happened: offline reverse geocoding of GPS fixes, IP to country, travel checks.

Nothing here touches the network. The place data (GeoNames cities of 1,000+ people and China's
county seats) ships in ``anti_fraud/data`` and is loaded once per process on first use; IP
addresses are resolved with the ``iptocc`` package (Regional Internet Registry delegations) and
country names come from ``pycountry``. docs/geolocation.md explains the choices and the limits.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import hmac
import ipaddress
import json
import math
import re
import threading
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal, NamedTuple

Source = Literal["gps", "ip", "none"]
Precision = Literal["city", "province", "country", "unknown"]
StorageMode = Literal["full", "truncated", "hashed"]

EARTH_RADIUS_KM = 6371.0088
# How far the nearest known place may be for each precision of a GPS fix (docs/geolocation.md).
CITY_KM = 40.0
PROVINCE_KM = 120.0
COUNTRY_KM = 300.0


class Province(NamedTuple):
    """A provincial-level division of China, keyed by the first two digits of its GB/T 2260 code."""

    code: str
    name_zh: str
    short_zh: str
    name_en: str
    iso: str


CN_PROVINCES: tuple[Province, ...] = (
    Province("11", "北京市", "北京", "Beijing", "CN-BJ"),
    Province("12", "天津市", "天津", "Tianjin", "CN-TJ"),
    Province("13", "河北省", "河北", "Hebei", "CN-HE"),
    Province("14", "山西省", "山西", "Shanxi", "CN-SX"),
    Province("15", "内蒙古自治区", "内蒙古", "Inner Mongolia", "CN-NM"),
    Province("21", "辽宁省", "辽宁", "Liaoning", "CN-LN"),
    Province("22", "吉林省", "吉林", "Jilin", "CN-JL"),
    Province("23", "黑龙江省", "黑龙江", "Heilongjiang", "CN-HL"),
    Province("31", "上海市", "上海", "Shanghai", "CN-SH"),
    Province("32", "江苏省", "江苏", "Jiangsu", "CN-JS"),
    Province("33", "浙江省", "浙江", "Zhejiang", "CN-ZJ"),
    Province("34", "安徽省", "安徽", "Anhui", "CN-AH"),
    Province("35", "福建省", "福建", "Fujian", "CN-FJ"),
    Province("36", "江西省", "江西", "Jiangxi", "CN-JX"),
    Province("37", "山东省", "山东", "Shandong", "CN-SD"),
    Province("41", "河南省", "河南", "Henan", "CN-HA"),
    Province("42", "湖北省", "湖北", "Hubei", "CN-HB"),
    Province("43", "湖南省", "湖南", "Hunan", "CN-HN"),
    Province("44", "广东省", "广东", "Guangdong", "CN-GD"),
    Province("45", "广西壮族自治区", "广西", "Guangxi", "CN-GX"),
    Province("46", "海南省", "海南", "Hainan", "CN-HI"),
    Province("50", "重庆市", "重庆", "Chongqing", "CN-CQ"),
    Province("51", "四川省", "四川", "Sichuan", "CN-SC"),
    Province("52", "贵州省", "贵州", "Guizhou", "CN-GZ"),
    Province("53", "云南省", "云南", "Yunnan", "CN-YN"),
    Province("54", "西藏自治区", "西藏", "Xizang", "CN-XZ"),
    Province("61", "陕西省", "陕西", "Shaanxi", "CN-SN"),
    Province("62", "甘肃省", "甘肃", "Gansu", "CN-GS"),
    Province("63", "青海省", "青海", "Qinghai", "CN-QH"),
    Province("64", "宁夏回族自治区", "宁夏", "Ningxia", "CN-NX"),
    Province("65", "新疆维吾尔自治区", "新疆", "Xinjiang", "CN-XJ"),
    Province("71", "台湾省", "台湾", "Taiwan", "CN-TW"),
    Province("81", "香港特别行政区", "香港", "Hong Kong", "CN-HK"),
    Province("82", "澳门特别行政区", "澳门", "Macao", "CN-MO"),
)
MUNICIPALITIES = frozenset({"11", "12", "31", "50"})
_PROVINCE_BY_NAME = {p.name_zh: p for p in CN_PROVINCES} | {p.short_zh: p for p in CN_PROVINCES}
# ISO 3166-1 gives Hong Kong, Macao and Taiwan their own codes; Chinese labels name them so.
_GREATER_CHINA_ZH = {"HK": "中国香港", "MO": "中国澳门", "TW": "中国台湾"}
_COUNTRY_FALLBACK = {"XK": ("科索沃", "Kosovo")}  # GeoNames' code, not in ISO 3166-1

# Suffixes dropped for display, longest first, and the ethnic names that follow a place name in
# autonomous regions and prefectures ("延边朝鲜族自治州" -> "延边").
_ZH_SUFFIXES = ("特别行政区", "自治区", "自治州", "自治县", "地区", "林区", "盟", "省", "市", "县")
_ETHNIC_TAIL = re.compile(
    "(?:(?:"
    "蒙古|回|藏|维吾尔|苗|彝|壮|布依|朝鲜|满|侗|瑶"
    "|白|土家|哈尼|哈萨克|傣|黎|傈僳|佤|畲|拉祜|水"
    "|东乡|纳西|景颇|柯尔克孜|土|达斡尔|仫佬|羌|布朗"
    "|撒拉|毛南|仡佬|锡伯|阿昌|普米|塔吉克|怒"
    "|乌孜别克|俄罗斯|鄂温克|德昂|保安|裕固|京|塔塔尔"
    "|独龙|鄂伦春|赫哲|门巴|珞巴|基诺"
    ")族?)+$"
)


def short_zh(name: str) -> str:
    """The everyday short form of a Chinese division name: "浙江省" -> "浙江", "杭州市" -> "杭州",
    "延边朝鲜族自治州" -> "延边"; names it does not recognise come back unchanged."""
    province = _PROVINCE_BY_NAME.get(name)
    if province is not None:
        return province.short_zh
    for suffix in _ZH_SUFFIXES:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            stem = name[: -len(suffix)]
            if suffix.startswith("自治"):
                ethnic = _ETHNIC_TAIL.search(stem, 2)
                stem = stem[: ethnic.start()] if ethnic else stem
            return stem
    return name


class CoordinateInvalidError(ValueError):
    """A GPS fix that cannot be a place on Earth; ``field`` names the argument at fault."""

    code = "coordinate_invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Place:
    """Where a scan happened, with where that knowledge came from and how fine it is.

    ``country`` is ISO 3166-1 alpha-2 (None when unknown). In China ``province`` and ``city`` are
    official Chinese names ("浙江省", "杭州市"; a municipality is its own city), elsewhere GeoNames'
    English names. Fields finer than ``precision`` are None. ``lat``/``lon`` are the GPS fix, or
    for an IP place the centre of its country's towns; ``radius_km`` is how far the true position
    may be from them (the phone's accuracy, or the country's extent), None when not known.
    """

    country: str | None
    province: str | None
    city: str | None
    lat: float | None
    lon: float | None
    source: Source
    precision: Precision
    radius_km: float | None = None

    def label_zh(self) -> str:
        """Chinese words for display: "浙江杭州", "上海", "中国香港", "法国"; else "未知位置"."""
        if self.country is None:
            return "未知位置"
        if self.country in _GREATER_CHINA_ZH:
            return _GREATER_CHINA_ZH[self.country]
        if self.country != "CN":
            return country_name_zh(self.country)
        if self.province is None:
            return "中国"
        words = [short_zh(self.province)]
        if self.city is not None and short_zh(self.city) not in words:
            words.append(short_zh(self.city))
        return "".join(words)

    def label_en(self) -> str:
        """English words for display: "Hangzhou, Zhejiang", "Paris, Ile-de-France, France"."""
        if self.country is None:
            return "Unknown location"
        if self.country == "CN":
            if self.province is None:
                return "China"
            province = _PROVINCE_BY_NAME.get(self.province)
            words = [province.name_en if province else self.province]
            if self.city is not None:
                words.insert(0, _cn_city_names().get(self.city, self.city))
        else:
            words = [w for w in (self.city, self.province) if w]
            words.append(country_name_en(self.country))
        return ", ".join(dict.fromkeys(words))

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (what scan records store)."""
        # By hand: dataclasses.asdict deep-copies, and this runs on every scan.
        return {
            "country": self.country,
            "province": self.province,
            "city": self.city,
            "lat": self.lat,
            "lon": self.lon,
            "source": self.source,
            "precision": self.precision,
            "radius_km": self.radius_km,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Place:
        """The Place a stored ``as_dict()`` describes; missing fields read as unknown."""
        source = data.get("source")
        precision = data.get("precision")

        def number(key: str) -> float | None:
            value = data.get(key)
            return float(value) if isinstance(value, int | float) else None

        return cls(
            country=data.get("country") or None,
            province=data.get("province") or None,
            city=data.get("city") or None,
            lat=number("lat"),
            lon=number("lon"),
            source=source if source in ("gps", "ip") else "none",
            precision=precision if precision in ("city", "province", "country") else "unknown",
            radius_km=number("radius_km"),
        )


UNKNOWN = Place(None, None, None, None, None, "none", "unknown")


@cache
def country_name_en(country: str) -> str:
    """The country's common English name ("South Korea"), else its code."""
    import pycountry

    entry = pycountry.countries.get(alpha_2=country)
    if entry is None:
        return _COUNTRY_FALLBACK.get(country, (country, country))[1]
    return str(getattr(entry, "common_name", None) or entry.name)


@cache
def country_name_zh(country: str) -> str:
    """The country's Chinese name ("法国", "韩国"), else its English name."""
    import gettext

    import pycountry

    if country in _COUNTRY_FALLBACK:
        return _COUNTRY_FALLBACK[country][0]
    entry = pycountry.countries.get(alpha_2=country)
    if entry is None:
        return country
    zh = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["zh_CN"])
    for name in (getattr(entry, "common_name", None), entry.name):
        if name and (translated := zh.gettext(name)) != name:
            return translated
    return country_name_en(country)


# ---------------------------------------------------------------------------------------------
# GPS: nearest known place
# ---------------------------------------------------------------------------------------------

_CELL_DEG = 0.5
_ROWS = int(180 / _CELL_DEG)
_COLS = int(360 / _CELL_DEG)


class _PlaceIndex:
    """Known places bucketed in 0.5° cells, sorted by cell so that a row of cells is one slice.

    A query scans rings of cells around its own until the nearest place found is closer than
    anything outside the scanned block could be (exact nearest by great-circle distance), or
    until nothing within COUNTRY_KM exists. Immutable once built, so threads share it freely.
    """

    def __init__(self, lines: Iterator[str]) -> None:
        """Build from places.tsv: a header, then ``lat lon country province city`` lines."""
        import numpy as np

        lat, lon, region = array("d"), array("d"), array("I")
        regions: dict[tuple[str, str], int] = {}
        names: dict[str, str] = {}  # one object per distinct city name
        cities: list[str] = []
        next(lines)
        for line in lines:
            if line:
                la, lo, country, province, city = line.rstrip("\n").split("\t")
                lat.append(float(la))
                lon.append(float(lo))
                region.append(regions.setdefault((country, province), len(regions)))
                cities.append(names.setdefault(city, city))
        lat_deg, lon_deg = np.frombuffer(lat), np.frombuffer(lon)
        cell_row = np.minimum(((lat_deg + 90) / _CELL_DEG).astype(np.int64), _ROWS - 1)
        cell_col = np.minimum(((lon_deg + 180) / _CELL_DEG).astype(np.int64), _COLS - 1)
        cell = cell_row * _COLS + cell_col
        order = np.argsort(cell, kind="stable")
        phi, lam = np.radians(lat_deg[order]), np.radians(lon_deg[order])
        # Unit vectors: the nearest place is the one with the largest dot product.
        self._points = np.ascontiguousarray(
            np.stack((np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)), axis=1)
        )
        self._region = np.frombuffer(region, dtype=np.uint32)[order]
        self._regions = list(regions)
        self._cities = [cities[i] for i in order.tolist()]
        starts = np.searchsorted(cell[order], np.arange(_ROWS * _COLS + 1))
        self._starts = array("i", starts.astype(np.int32).tobytes())

    def label(self, i: int) -> tuple[str, str | None, str | None]:
        """(country, province, city) of place ``i``; None where GeoNames has no name."""
        country, province = self._regions[int(self._region[i])]
        return country, province or None, self._cities[i] or None

    def _spans(self, c: int, k: int) -> list[tuple[int, int]]:
        """Column ranges from c - k to c + k, split where they wrap around 180°."""
        if 2 * k + 1 >= _COLS:
            return [(0, _COLS - 1)]
        if c - k < 0:
            return [(c - k + _COLS, _COLS - 1), (0, c + k)]
        if c + k >= _COLS:
            return [(c - k, _COLS - 1), (0, c + k - _COLS)]
        return [(c - k, c + k)]

    def _scan(
        self, cells: list[tuple[int, int, int]], q: Any, best: tuple[float, int]
    ) -> tuple[float, int]:
        """Best (dot product, place) of ``best`` and the places in (row, col0, col1) ranges."""
        starts, points = self._starts, self._points
        for row, col0, col1 in cells:
            s, e = starts[row * _COLS + col0], starts[row * _COLS + col1 + 1]
            if e > s:
                dots = points[s:e] @ q
                j = int(dots.argmax())
                if dots[j] > best[0]:
                    best = (float(dots[j]), s + j)
        return best

    def nearest(self, lat: float, lon: float) -> tuple[int, float] | None:
        """(place, km) of the known place nearest to (lat, lon); None if none within COUNTRY_KM."""
        import numpy as np

        phi, lam = math.radians(lat), math.radians(lon)
        cos_phi = math.cos(phi)
        q = np.array((cos_phi * math.cos(lam), cos_phi * math.sin(lam), math.sin(phi)))
        r = min(int((lat + 90) / _CELL_DEG), _ROWS - 1)
        c = min(int((lon + 180) / _CELL_DEG), _COLS - 1)
        # First the 3x3 block around the query's cell, a row at a time, then ring after ring.
        span = self._spans(c, 1)
        cells = [(row, a, b) for row in range(r - 1, r + 2) if 0 <= row < _ROWS for a, b in span]
        best = self._scan(cells, q, (-2.0, -1))
        k = 1
        while True:
            chord = math.sqrt(max(0.0, 2.0 - 2.0 * best[0]))
            km = 2 * EARTH_RADIUS_KM * math.asin(min(1.0, chord / 2))
            if self._covered_km(lat, lon, cos_phi, r, c, k) >= min(km, COUNTRY_KM):
                return (best[1], km) if km <= COUNTRY_KM else None
            k += 1
            span = self._spans(c, k)
            cells = [(row, a, b) for row in (r - k, r + k) if 0 <= row < _ROWS for a, b in span]
            if 2 * k + 1 <= _COLS:
                sides = {(c - k) % _COLS, (c + k) % _COLS}
                inner = range(max(r - k + 1, 0), min(r + k, _ROWS))
                cells += [(row, col, col) for row in inner for col in sides]
            best = self._scan(cells, q, best)

    @staticmethod
    def _covered_km(lat: float, lon: float, cos_phi: float, r: int, c: int, k: int) -> float:
        """A lower bound of the distance from (lat, lon) to any cell outside the scanned block."""
        north = (r + k + 1) * _CELL_DEG - 90 - lat if r + k + 1 < _ROWS else 180.0
        south = lat - ((r - k) * _CELL_DEG - 90) if r - k > 0 else 180.0
        lat_km = math.radians(min(north, south)) * EARTH_RADIUS_KM
        if 2 * k + 1 >= _COLS:
            return lat_km
        west = lon - ((c - k) * _CELL_DEG - 180)
        east = (c + k + 1) * _CELL_DEG - 180 - lon
        dlon = min(west, east)
        if dlon < 90:  # to the meridian's great circle: asin(sin dlon cos lat)
            lon_km = math.asin(math.sin(math.radians(dlon)) * cos_phi) * EARTH_RADIUS_KM
        else:  # the meridian comes closest at the pole
            lon_km = math.radians(90 - abs(lat)) * EARTH_RADIUS_KM
        return min(lat_km, lon_km)


_load_lock = threading.Lock()
_index: _PlaceIndex | None = None


def _data_text(name: str) -> str:
    raw = resources.files("anti_fraud.data").joinpath(name).read_bytes()
    return (gzip.decompress(raw) if name.endswith(".gz") else raw).decode("utf-8")


def _place_index() -> _PlaceIndex:
    """The index, loaded on first use (about 0.3 s), once per process."""
    global _index
    if _index is None:
        with _load_lock:
            if _index is None:
                source = resources.files("anti_fraud.data").joinpath("places.tsv.gz")
                with source.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
                    _index = _PlaceIndex(lines)
    return _index


@cache
def _cn_city_names() -> dict[str, str]:
    names: dict[str, str] = json.loads(_data_text("cn_cities.json"))
    return names


@cache
def _country_centres() -> dict[str, tuple[float, float, float]]:
    data = json.loads(_data_text("countries.json"))
    return {cc: (v[0], v[1], v[2]) for cc, v in data.items()}


def _check_coordinate(field: str, value: object, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CoordinateInvalidError(field, f"must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not -limit <= number <= limit:
        raise CoordinateInvalidError(field, f"must be from {-limit:g} to {limit:g}, got {value!r}")
    return number


def locate_gps(lat: float, lon: float, accuracy_m: float | None = None) -> Place:
    """Reverse-geocode a WGS-84 fix offline to the nearest known place's country/province/city.

    Precision follows the larger of the distance to that place and the phone's accuracy:
    city up to 40 km, province up to 120 km, country up to 300 km; farther (open sea) the Place
    keeps the coordinates with country None and precision "unknown".
    Raises CoordinateInvalidError (a ValueError) naming the field: a coordinate that is not a
    finite number in range, a negative or non-finite accuracy, or 0,0 without an accuracy (what
    phones send when they have no fix).
    """
    lat = _check_coordinate("lat", lat, 90.0)
    lon = _check_coordinate("lon", lon, 180.0)
    accuracy_km = None
    if accuracy_m is not None:
        accuracy_km = _check_coordinate("accuracy_m", accuracy_m, math.inf) / 1000
        if accuracy_km < 0:
            raise CoordinateInvalidError("accuracy_m", f"must not be negative, got {accuracy_m!r}")
    elif lat == 0 and lon == 0:
        raise CoordinateInvalidError("lat", "0, 0 without an accuracy is a missing fix")
    index = _place_index()
    found = index.nearest(lat, lon)
    spread = max(found[1] if found else math.inf, accuracy_km or 0.0)
    if found is None or spread > COUNTRY_KM:
        return Place(None, None, None, lat, lon, "gps", "unknown", accuracy_km)
    country, province, city = index.label(found[0])
    if spread <= CITY_KM:
        return Place(country, province, city, lat, lon, "gps", "city", accuracy_km)
    if spread <= PROVINCE_KM:
        return Place(country, province, None, lat, lon, "gps", "province", accuracy_km)
    return Place(country, None, None, lat, lon, "gps", "country", accuracy_km)


# ---------------------------------------------------------------------------------------------
# IP addresses
# ---------------------------------------------------------------------------------------------

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _parse_ip(ip: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address without a zone, an IPv4 address inside IPv6 (mapped, NAT64, 6to4) taken out."""
    if not isinstance(ip, str):
        return None
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id is not None:  # "%eth0" names the client's own interface: not the address
            addr = ipaddress.IPv6Address(int(addr))
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr in _NAT64:
            return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if addr.sixtofour is not None:
            return addr.sixtofour
    return addr


def locate_ip(ip: str) -> Place:
    """The country an IPv4/IPv6 address is registered to, as a Place of precision "country"
    centred on that country's towns. Never raises: a malformed, private, loopback, reserved,
    multicast or unlisted address (or a block the registries file under "EU") gives UNKNOWN."""
    addr = _parse_ip(ip)
    if addr is None or not addr.is_global or addr.is_multicast:
        return UNKNOWN
    from iptocc import country_code

    try:
        country = country_code(str(addr))
    except Exception:  # a lookup failure must not fail a scan
        return UNKNOWN
    centre = _country_centres().get(country or "")
    if country is None or centre is None:
        return UNKNOWN
    return Place(country, None, None, centre[0], centre[1], "ip", "country", centre[2])


def ip_for_storage(ip: str, mode: StorageMode | str, key: bytes) -> str | None:
    """The IP as a tenant's privacy setting (``mode``) keeps it; None if ``ip`` is not an address.

    "full": the address in canonical form; "truncated": its network, IPv4 /24 ("1.2.3.0"),
    IPv6 /48 ("2400:3200:1::"); "hashed": the first 32 hex digits of HMAC-SHA256(key, canonical
    form), stable for a key and not reversible without it. An IPv4 address inside IPv6 counts
    as the IPv4 address. Raises ValueError for an unknown mode or an empty key when hashing.
    """
    if mode not in ("full", "truncated", "hashed"):
        raise ValueError(f"mode: must be full, truncated or hashed, got {mode!r}")
    addr = _parse_ip(ip)
    if addr is None:
        return None
    if mode == "full":
        return str(addr)
    if mode == "truncated":
        prefix = 24 if addr.version == 4 else 48
        return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)
    if not key:
        raise ValueError("key: hashing needs a non-empty key")
    return hmac.new(key, str(addr).encode(), hashlib.sha256).hexdigest()[:32]


# ---------------------------------------------------------------------------------------------
# Distances and travel
# ---------------------------------------------------------------------------------------------


def distance_km(a: Place, b: Place) -> float | None:
    """Great-circle (haversine) distance between two places' coordinates; None if either has
    none. IP places count from their country's centre: see travel_is_impossible for decisions."""
    if a.lat is None or a.lon is None or b.lat is None or b.lon is None:
        return None
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    dphi, dlam = phi2 - phi1, math.radians(b.lon - a.lon)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def travel_is_impossible(
    a_place: Place,
    a_time: dt.datetime,
    b_place: Place,
    b_time: dt.datetime,
    max_speed_kmh: float = 900.0,
    min_distance_km: float = 100.0,
) -> bool:
    """True when going from one place to the other in the time between needs more than
    ``max_speed_kmh``.

    The distance counted is the shortest the places allow: their distance less both radii
    (GPS accuracy, an IP country's extent). Under ``min_distance_km`` it never counts (GPS and
    IP noise), nor when either place has no coordinates. Times must both be aware (or naive).
    """
    distance = distance_km(a_place, b_place)
    if distance is None:
        return False
    shortest = distance - (a_place.radius_km or 0.0) - (b_place.radius_km or 0.0)
    if shortest < min_distance_km:
        return False
    hours = abs((b_time - a_time).total_seconds()) / 3600
    return hours == 0 or shortest / hours > max_speed_kmh
