"""Rebuild ``console/static/vendor/world-countries.json``: the world's country outlines keyed by
ISO 3166-1 alpha-2 code, as the scan records name countries.

Source: npm ``echarts@4.9.0``, ``map/json/world.json`` (Natural Earth outlines, Apache-2.0 as
ECharts ships them), whose features are named in Natural Earth's short English ("Dem. Rep.
Congo"). Names are matched to codes by ``pycountry`` (a dependency already), with the short
forms below by hand; coordinates are rounded to 0.01° (about 1 km, finer than a dashboard
draws), which halves the file. Run from the repository root::

    npm pack echarts@4.9.0 && tar xzf echarts-4.9.0.tgz package/map/json/world.json
    python -m console.maps.build_world package/map/json/world.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pycountry

OUT = Path(__file__).resolve().parents[1] / "static" / "vendor" / "world-countries.json"

# Natural Earth's short names that pycountry does not resolve by itself.
SHORT_NAMES = {
    "Aland": "AX",
    "Antigua and Barb.": "AG",
    "Bosnia and Herz.": "BA",
    "Br. Indian Ocean Ter.": "IO",
    "Cape Verde": "CV",
    "Cayman Is.": "KY",
    "Central African Rep.": "CF",
    "Congo": "CG",
    "Czech Rep.": "CZ",
    "Dem. Rep. Congo": "CD",
    "Dem. Rep. Korea": "KP",
    "Dominican Rep.": "DO",
    "Eq. Guinea": "GQ",
    "Faeroe Is.": "FO",
    "Falkland Is.": "FK",
    "Fr. Polynesia": "PF",
    "Fr. S. Antarctic Lands": "TF",
    "Heard I. and McDonald Is.": "HM",
    "Korea": "KR",
    "Lao PDR": "LA",
    "Macedonia": "MK",
    "N. Mariana Is.": "MP",
    "Palestine": "PS",
    "S. Geo. and S. Sandw. Is.": "GS",
    "S. Sudan": "SS",
    "Saint Helena": "SH",
    "Solomon Is.": "SB",
    "St. Pierre and Miquelon": "PM",
    "St. Vin. and Gren.": "VC",
    "Swaziland": "SZ",
    "Turks and Caicos Is.": "TC",
    "U.S. Virgin Is.": "VI",
    "W. Sahara": "EH",
    "Turkey": "TR",
    "Russia": "RU",
    "Iran": "IR",
    "Syria": "SY",
    "Vietnam": "VN",
    "Bolivia": "BO",
    "Venezuela": "VE",
    "Tanzania": "TZ",
    "Moldova": "MD",
    "Micronesia": "FM",
    "Brunei": "BN",
    "Côte d'Ivoire": "CI",
    "São Tomé and Principe": "ST",
}
# Outlines with no country of their own in ISO 3166-1: drawn, never coloured.
NO_CODE = {"", "N. Cyprus", "Siachen Glacier"}


def code_of(name: str) -> str | None:
    if name in NO_CODE:
        return None
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    found = pycountry.countries.get(name=name) or pycountry.countries.get(common_name=name)
    if found is None:
        raise LookupError(f"no ISO code for {name!r}: add it to SHORT_NAMES")
    return str(found.alpha_2)


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def build(source: Path) -> dict[str, Any]:
    world = json.loads(source.read_text(encoding="utf-8"))
    features = []
    for feature in world["features"]:
        code = code_of(feature["properties"].get("name", ""))
        geometry = feature["geometry"]
        features.append(
            {
                "type": "Feature",
                "properties": {"name": code or "-"},
                "geometry": {
                    "type": geometry["type"],
                    "coordinates": _round(geometry["coordinates"]),
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def main(argv: list[str]) -> int:
    built = build(Path(argv[1]))
    OUT.write_text(json.dumps(built, separators=(",", ":")), encoding="utf-8")
    print(f"{OUT}: {len(built['features'])} outlines, {OUT.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
