"""Build ``cn_cities.json``: China's prefecture-level cities by province, for sales regions.

Run by hand after refreshing the geolocation data (docs/traceability.md)::

    .venv/bin/python traceability/data/build_regions.py

It reads the place list that ships with the geolocation data (``anti_fraud/data``: GB/T 2260
divisions with official Chinese names) and the English names beside it, and writes, next to
this file, ``{"CN-ZJ": {"杭州市": "Hangzhou", ...}, ...}``. Kept as data in ``traceability`` so that
sales regions are validated without a dependency on the geolocation code.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
GEO = HERE.parents[1] / "anti_fraud" / "data"
PROVINCES = HERE / "cn_provinces.json"


def main() -> None:
    provinces = json.loads(PROVINCES.read_text(encoding="utf-8"))
    iso_by_name = {p["name_zh"]: p["iso"] for p in provinces}
    english = json.loads((GEO / "cn_cities.json").read_text(encoding="utf-8"))
    cities: dict[str, dict[str, str]] = defaultdict(dict)
    with gzip.open(GEO / "places.tsv.gz", "rt", encoding="utf-8") as lines:
        for line in lines:
            _lat, _lon, country, province, city = line.rstrip("\n").split("\t")
            if country == "CN" and province in iso_by_name and city:
                cities[iso_by_name[province]][city] = english.get(city, city)
    out = {iso: dict(sorted(names.items())) for iso, names in sorted(cities.items())}
    (HERE / "cn_cities.json").write_text(
        json.dumps(out, ensure_ascii=False, indent=0) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
