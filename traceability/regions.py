"""Sales regions: what a distributor may sell where, and whether a located scan is inside.

A region is one canonical string:

* a country, ISO 3166-1 alpha-2: ``CN``, ``FR``;
* a first-level division, ISO 3166-2: ``CN-ZJ`` (Zhejiang), ``US-CA``;
* a Chinese prefecture-level city, which has no ISO 3166-2 code: its province's code, a slash
  and the city's official name, ``CN-ZJ/杭州市`` (accepted as ``CN-ZJ/杭州`` or
  ``CN-ZJ/Hangzhou`` too).

Countries and divisions are checked against ``pycountry`` (the Debian iso-codes data), Chinese
provinces and cities against the lists in ``traceability/data`` (GB/T 2260, built from the data the
geolocation ships with). Nothing here touches the network.

:func:`region_check` answers ``inside``, ``outside`` or ``unknown`` for a place at a given
precision: a scan located only to the country says nothing about provinces, so it can be
``outside`` a Chinese province only when it is outside China.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

from core.errors import ValidationFailedError

RegionCheck = Literal["inside", "outside", "unknown"]
PRECISION_RANK = {"unknown": 0, "country": 1, "province": 2, "city": 3}


@dataclass(frozen=True)
class Region:
    code: str
    country: str
    division: str | None  # ISO 3166-2
    city: str | None  # official Chinese name

    @property
    def level(self) -> str:
        return "city" if self.city else "province" if self.division else "country"


@dataclass(frozen=True)
class Located:
    """Where a scan (or a handheld) was, as far as it is known."""

    country: str | None
    division: str | None  # ISO 3166-2 when known
    city: str | None  # official Chinese name in China
    precision: str  # city | province | country | unknown


@cache
def _cn_provinces() -> dict[str, dict[str, str]]:
    text = resources.files("traceability.data").joinpath("cn_provinces.json").read_text("utf-8")
    return {p["iso"]: p for p in json.loads(text)}


@cache
def _cn_cities() -> dict[str, dict[str, str]]:
    text = resources.files("traceability.data").joinpath("cn_cities.json").read_text("utf-8")
    data: dict[str, dict[str, str]] = json.loads(text)
    return data


@cache
def _province_iso_by_name() -> dict[str, str]:
    names: dict[str, str] = {}
    for iso, p in _cn_provinces().items():
        names[p["name_zh"]] = names[p["short_zh"]] = iso
    return names


def province_iso(country: str | None, province: str | None) -> str | None:
    """The ISO 3166-2 code of a located province ("浙江省" -> "CN-ZJ"; "California" -> "US-CA")."""
    if not country or not province:
        return None
    if country == "CN":
        return _province_iso_by_name().get(province)
    return _division_by_name(country).get(province.casefold())


@cache
def _division_by_name(country: str) -> dict[str, str]:
    import pycountry

    found: dict[str, str] = {}
    for sub in pycountry.subdivisions.get(country_code=country) or ():
        if getattr(sub, "parent_code", None) is None:
            found[sub.name.casefold()] = sub.code
    return found


def _city_name(division: str, given: str) -> str | None:
    cities = _cn_cities().get(division, {})
    if given in cities:
        return given
    for official, english in cities.items():
        if given in (official.rstrip("市"), english) or given.casefold() == english.casefold():
            return official
        if len(official) > 2 and official.startswith(given) and len(given) >= 2:
            return official
    return None


def parse_region(text: object, *, field: str = "regions") -> Region:
    """The canonical region ``text`` names, or a 422 naming what is wrong."""
    import pycountry

    if not isinstance(text, str) or not 2 <= len(text.strip()) <= 80:
        raise ValidationFailedError.field(
            field, "a region is a string such as CN, CN-ZJ or CN-ZJ/杭州市"
        )
    raw = text.strip()
    head, _, city = raw.partition("/")
    head = head.upper()
    country = head.split("-", 1)[0]
    if pycountry.countries.get(alpha_2=country) is None:
        raise ValidationFailedError.field(
            field, f"{raw!r}: {country!r} is not an ISO 3166-1 country"
        )
    if head == country:
        if city:
            raise ValidationFailedError.field(
                field, f"{raw!r}: a city needs its province, CN-ZJ/杭州市"
            )
        return Region(country, country, None, None)
    if country == "CN":
        if head not in _cn_provinces():
            raise ValidationFailedError.field(
                field, f"{raw!r}: {head!r} is not a province of China"
            )
    elif pycountry.subdivisions.get(code=head) is None:
        raise ValidationFailedError.field(field, f"{raw!r}: {head!r} is not an ISO 3166-2 division")
    if not city:
        return Region(head, country, head, None)
    if country != "CN":
        raise ValidationFailedError.field(field, f"{raw!r}: cities are known in China only")
    official = _city_name(head, city.strip())
    if official is None:
        raise ValidationFailedError.field(field, f"{raw!r}: no city {city!r} in {head}")
    return Region(f"{head}/{official}", country, head, official)


def parse_regions(values: object, *, field: str = "regions") -> list[Region]:
    if not isinstance(values, list) or len(values) > 500:
        raise ValidationFailedError.field(field, "a list of at most 500 regions")
    seen: dict[str, Region] = {}
    for value in values:
        region = parse_region(value, field=field)
        seen.setdefault(region.code, region)
    return list(seen.values())


def region_of_code(code: str) -> Region:
    """The Region of a stored canonical code (no validation: it was validated on the way in)."""
    head, _, city = code.partition("/")
    country = head.split("-", 1)[0]
    return Region(code, country, head if head != country else None, city or None)


def _one(region: Region, at: Located) -> RegionCheck:
    rank = PRECISION_RANK.get(at.precision, 0)
    if at.country is None or rank == 0:
        return "unknown"
    if at.country != region.country:
        return "outside"
    if region.division is None:
        return "inside"
    if rank < 2 or at.division is None:
        return "unknown"
    if at.division != region.division:
        return "outside"
    if region.city is None:
        return "inside"
    if rank < 3 or at.city is None:
        return "unknown"
    return "inside" if at.city == region.city else "outside"


def region_check(regions: Iterable[Region], at: Located) -> RegionCheck:
    """``inside`` if any region holds the place, ``outside`` if every region provably does not,
    else ``unknown`` (no regions, or a place too coarse to tell)."""
    answers = [_one(r, at) for r in regions]
    if not answers:
        return "unknown"
    if "inside" in answers:
        return "inside"
    return "outside" if all(a == "outside" for a in answers) else "unknown"
