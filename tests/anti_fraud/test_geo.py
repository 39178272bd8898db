"""Geolocation as a brand or a consumer sees it: the place names on a scan, IP countries, the
impossible-travel rule and how an IP is kept. Everything runs offline on the shipped data."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import hmac
import math
import random
import threading
from importlib import resources

import numpy as np
import pytest

from anti_fraud import geo
from anti_fraud.geo import (
    UNKNOWN,
    CoordinateInvalidError,
    Place,
    distance_km,
    ip_for_storage,
    locate_gps,
    locate_ip,
    short_zh,
    travel_is_impossible,
)

T0 = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)
WEST_LAKE = (30.25, 120.15)
BEIJING = (39.9042, 116.4074)


# --- GPS: what a scan's place says ----------------------------------------------------------


@pytest.mark.parametrize(
    ("lat", "lon", "province", "city", "label_zh", "label_en"),
    [
        (*WEST_LAKE, "浙江省", "杭州市", "浙江杭州", "Hangzhou, Zhejiang"),
        (31.23, 121.47, "上海市", "上海市", "上海", "Shanghai"),
        (*BEIJING, "北京市", "北京市", "北京", "Beijing"),
        (23.1291, 113.2644, "广东省", "广州市", "广东广州", "Guangzhou, Guangdong"),
        (30.5728, 104.0668, "四川省", "成都市", "四川成都", "Chengdu, Sichuan"),
        (29.5630, 106.5516, "重庆市", "重庆市", "重庆", "Chongqing"),
        (43.8256, 87.6168, "新疆维吾尔自治区", "乌鲁木齐市", "新疆乌鲁木齐", "Urumqi, Xinjiang"),
        (42.9048, 129.5133, "吉林省", "延边朝鲜族自治州", "吉林延边", "Yanbian, Jilin"),
        (30.3050, 113.4530, "湖北省", "仙桃市", "湖北仙桃", "Xiantao, Hubei"),
    ],
)
def test_chinese_fixes_name_province_and_city_in_chinese(
    lat: float, lon: float, province: str, city: str, label_zh: str, label_en: str
) -> None:
    place = locate_gps(lat, lon, accuracy_m=15)

    assert (place.country, place.province, place.city) == ("CN", province, city)
    assert (place.source, place.precision) == ("gps", "city")
    assert (place.lat, place.lon, place.radius_km) == (lat, lon, 0.015)
    assert place.label_zh() == label_zh
    assert place.label_en() == label_en


def test_a_fix_in_paris_is_france_with_the_city_in_english() -> None:
    place = locate_gps(48.8530, 2.3490)  # Notre-Dame

    assert (place.country, place.city, place.precision) == ("FR", "Paris", "city")
    assert place.label_zh() == "法国"
    assert place.label_en() == "Paris, Ile-de-France, France"


@pytest.mark.parametrize(
    ("lat", "lon", "country", "label_zh"),
    [
        (22.2800, 114.1600, "HK", "中国香港"),
        (22.1900, 113.5400, "MO", "中国澳门"),
        (25.0330, 121.5654, "TW", "中国台湾"),
    ],
)
def test_hong_kong_macao_and_taiwan_read_as_parts_of_china(
    lat: float, lon: float, country: str, label_zh: str
) -> None:
    place = locate_gps(lat, lon)

    assert place.country == country
    assert place.label_zh() == label_zh


def test_open_sea_far_from_any_town_keeps_the_fix_but_names_nothing() -> None:
    place = locate_gps(0.0, -150.0, accuracy_m=30)  # mid-Pacific

    assert (place.country, place.province, place.city) == (None, None, None)
    assert (place.source, place.precision) == ("gps", "unknown")
    assert (place.lat, place.lon) == (0.0, -150.0)
    assert place.label_zh() == "未知位置"
    assert place.label_en() == "Unknown location"


def test_offshore_the_place_is_only_as_fine_as_the_distance_to_land_allows() -> None:
    place = locate_gps(29.5, 123.5)  # East China Sea, about 80 km off Zhoushan

    assert (place.country, place.province, place.city) == ("CN", "浙江省", None)
    assert place.precision == "province"
    assert place.label_zh() == "浙江"
    assert place.label_en() == "Zhejiang"


def test_a_coarse_phone_fix_is_not_trusted_to_the_city() -> None:
    coarse = locate_gps(*WEST_LAKE, accuracy_m=80_000)
    very_coarse = locate_gps(*WEST_LAKE, accuracy_m=250_000)

    assert (coarse.province, coarse.city, coarse.precision) == ("浙江省", None, "province")
    assert (very_coarse.country, very_coarse.province) == ("CN", None)
    assert very_coarse.precision == "country"
    assert very_coarse.label_zh() == "中国"
    assert coarse.radius_km == 80.0


@pytest.mark.parametrize(
    ("lat", "lon", "accuracy_m", "field"),
    [
        (math.nan, 120.0, None, "lat"),
        (30.0, math.nan, None, "lon"),
        (math.inf, 120.0, None, "lat"),
        (90.5, 120.0, None, "lat"),
        (-91, 120.0, None, "lat"),
        (30.0, 180.01, None, "lon"),
        (30.0, -200, None, "lon"),
        ("30.2", 120.0, None, "lat"),
        (True, 120.0, None, "lat"),
        (0.0, 0.0, None, "lat"),
        (30.0, 120.0, -5.0, "accuracy_m"),
        (30.0, 120.0, math.nan, "accuracy_m"),
    ],
)
def test_impossible_fixes_are_refused_naming_the_field(
    lat: object, lon: object, accuracy_m: float | None, field: str
) -> None:
    with pytest.raises(ValueError, match=f"^{field}: ") as caught:
        locate_gps(lat, lon, accuracy_m)  # type: ignore[arg-type]

    assert isinstance(caught.value, CoordinateInvalidError)
    assert caught.value.field == field


def test_null_island_with_an_accuracy_is_a_real_fix_at_sea() -> None:
    place = locate_gps(0.0, 0.0, accuracy_m=10)

    assert (place.source, place.precision, place.country) == ("gps", "unknown", None)


def test_the_edges_of_the_map_are_valid_fixes() -> None:
    for lat, lon in [(90, 0), (-90, 0), (0, 180), (0, -180), (-17.7, 178.0), (-17.7, -180)]:
        assert locate_gps(lat, lon).source == "gps"


def _brute_force_nearest() -> tuple[np.ndarray, list[tuple[str, str | None, str | None]]]:
    """The shipped places read independently of geo, for an exhaustive nearest search."""
    raw = resources.files("anti_fraud.data").joinpath("places.tsv.gz").read_bytes()
    rows = [line.split("\t") for line in gzip.decompress(raw).decode().splitlines()[1:]]
    lat = np.radians(np.array([float(r[0]) for r in rows]))
    lon = np.radians(np.array([float(r[1]) for r in rows]))
    points = np.stack((np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)), 1)
    return points, [(r[2], r[3] or None, r[4] or None) for r in rows]


def test_every_fix_is_named_after_the_truly_nearest_known_place() -> None:
    points, labels = _brute_force_nearest()
    rng = random.Random(20250301)
    fixes = [(rng.uniform(18, 54), rng.uniform(73, 135)) for _ in range(150)]  # China's box
    fixes += [
        (math.degrees(math.asin(rng.uniform(-1, 1))), rng.uniform(-180, 180)) for _ in range(150)
    ]
    fixes += [(rng.uniform(-60, 70), rng.choice([-180, 179.99])) for _ in range(20)]
    fixes += [(rng.uniform(70, 90), rng.uniform(-180, 180)) for _ in range(20)]
    named = 0
    for lat, lon in fixes:
        phi, lam = math.radians(lat), math.radians(lon)
        q = np.array((math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)))
        dots = points @ q
        best = int(dots.argmax())
        km = (
            2
            * geo.EARTH_RADIUS_KM
            * math.asin(min(1.0, math.sqrt(max(0.0, 2 - 2 * dots[best])) / 2))
        )
        place = locate_gps(lat, lon, accuracy_m=1)
        if km <= geo.CITY_KM:
            named += 1
            assert (place.country, place.province, place.city) == labels[best], (lat, lon)
        elif km > geo.COUNTRY_KM:
            assert place.country is None, (lat, lon)
        else:
            assert place.country == labels[best][0], (lat, lon)
    assert named > 50  # the sample reached the towns, not only the sea


def test_threads_racing_on_the_first_fix_load_the_places_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(geo, "_index", None)
    built: list[object] = []
    real_index = geo._PlaceIndex

    class CountingIndex(real_index):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object) -> None:
            built.append(self)
            super().__init__(*args)

    monkeypatch.setattr(geo, "_PlaceIndex", CountingIndex)
    start = threading.Barrier(8)
    answers: list[str] = []

    def scan() -> None:
        start.wait()
        answers.append(locate_gps(*WEST_LAKE).label_zh())

    threads = [threading.Thread(target=scan) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(built) == 1
    assert answers == ["浙江杭州"] * 8


# --- Labels of stored places -----------------------------------------------------------------


def test_a_place_read_back_from_storage_labels_the_same() -> None:
    place = locate_gps(*WEST_LAKE)

    again = Place.from_dict(place.as_dict())

    assert again == place == Place(**place.as_dict())
    assert again.label_zh() == "浙江杭州"
    assert again.as_dict()["source"] == "gps"


def test_an_old_or_partial_stored_place_reads_as_what_it_says() -> None:
    assert Place.from_dict({}) == UNKNOWN
    legacy = Place.from_dict({"country": "CN", "province": "浙江省", "city": "杭州市", "lat": 30})

    assert legacy.label_zh() == "浙江杭州"
    assert (legacy.lat, legacy.lon, legacy.source, legacy.precision) == (
        30.0,
        None,
        "none",
        "unknown",
    )
    assert Place.from_dict({"country": "FR", "source": "bogus"}).source == "none"


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ("浙江省", "浙江"),
        ("杭州市", "杭州"),
        ("广西壮族自治区", "广西"),
        ("内蒙古自治区", "内蒙古"),
        ("西藏自治区", "西藏"),
        ("香港特别行政区", "香港"),
        ("恩施土家族苗族自治州", "恩施"),
        ("海西蒙古族藏族自治州", "海西"),
        ("克孜勒苏柯尔克孜自治州", "克孜勒苏"),
        ("大理白族自治州", "大理"),
        ("阿拉善盟", "阿拉善"),
        ("神农架林区", "神农架"),
        ("喀什地区", "喀什"),
        ("保亭黎族苗族自治县", "保亭"),
        ("Paris", "Paris"),
    ],
)
def test_chinese_division_names_shorten_as_people_say_them(name: str, short: str) -> None:
    assert short_zh(name) == short


def test_country_only_places_read_as_the_country() -> None:
    assert Place("KR", None, None, None, None, "ip", "country").label_zh() == "韩国"
    assert Place("KR", None, None, None, None, "ip", "country").label_en() == "South Korea"
    assert Place("CN", None, None, None, None, "ip", "country").label_en() == "China"
    assert Place("XK", None, None, None, None, "ip", "country").label_zh() == "科索沃"


# --- IP addresses ------------------------------------------------------------------------------


# iptocc exposes no ranges to pick from: 8.8.8.8 and 1.0.16.1 are its own documented examples,
# the others APNIC delegations to China (AliDNS, 114DNS), checked against iptocc 3.3.170.
@pytest.mark.parametrize(
    ("ip", "country", "label_zh"),
    [
        ("223.5.5.5", "CN", "中国"),
        ("114.114.114.114", "CN", "中国"),
        ("2400:3200::1", "CN", "中国"),
        ("::ffff:223.5.5.5", "CN", "中国"),
        ("2400:3200::1%eth0", "CN", "中国"),
        ("8.8.8.8", "US", "美国"),
        ("2001:4860:4860::8888", "US", "美国"),
        ("1.0.16.1", "JP", "日本"),
        (" 223.5.5.5\n", "CN", "中国"),
    ],
)
def test_public_addresses_give_their_country(ip: str, country: str, label_zh: str) -> None:
    place = locate_ip(ip)

    assert (place.country, place.province, place.city) == (country, None, None)
    assert (place.source, place.precision) == ("ip", "country")
    assert place.label_zh() == label_zh
    assert place.lat is not None and place.radius_km is not None and place.radius_km > 100


@pytest.mark.parametrize(
    "ip",
    [
        "10.1.2.3",
        "192.168.1.10",
        "172.16.0.1",
        "127.0.0.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "100.64.0.1",
        "169.254.1.1",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "ff02::1",
        "2001:db8::1",
        "",
        "   ",
        "not an ip",
        "1.2.3",
        "256.1.1.1",
        "1.2.3.4.5",
        "::ffff:10.0.0.1",
        "223.5.5.5/24",
        "\x00",
    ],
)
def test_private_reserved_and_malformed_addresses_give_the_unknown_place(ip: str) -> None:
    assert locate_ip(ip) == UNKNOWN
    assert locate_ip(ip).label_zh() == "未知位置"


def test_locate_ip_never_raises_even_on_non_strings() -> None:
    assert locate_ip(None) == UNKNOWN  # type: ignore[arg-type]
    assert locate_ip(b"8.8.8.8") == UNKNOWN  # type: ignore[arg-type]


# --- Distances and impossible travel -----------------------------------------------------------


def test_hangzhou_to_beijing_in_ten_minutes_is_impossible_in_five_hours_is_not() -> None:
    hangzhou, beijing = locate_gps(*WEST_LAKE), locate_gps(*BEIJING)
    km = distance_km(hangzhou, beijing)

    assert km is not None and 1100 < km < 1150
    assert travel_is_impossible(hangzhou, T0, beijing, T0 + dt.timedelta(minutes=10))
    assert travel_is_impossible(beijing, T0 + dt.timedelta(minutes=10), hangzhou, T0)
    assert not travel_is_impossible(hangzhou, T0, beijing, T0 + dt.timedelta(hours=5))


def test_short_hops_never_count_however_fast() -> None:
    a, b = locate_gps(*WEST_LAKE), locate_gps(30.52, 120.15)
    km = distance_km(a, b)

    assert km is not None and 25 < km < 35
    assert not travel_is_impossible(a, T0, b, T0 + dt.timedelta(minutes=1))
    assert not travel_is_impossible(a, T0, b, T0)
    assert travel_is_impossible(a, T0, b, T0 + dt.timedelta(minutes=1), min_distance_km=20)


def test_two_far_places_at_the_same_instant_is_impossible() -> None:
    assert travel_is_impossible(locate_gps(*WEST_LAKE), T0, locate_gps(*BEIJING), T0)


def test_the_phones_accuracy_is_given_the_benefit_of_the_doubt() -> None:
    a = locate_gps(*WEST_LAKE, accuracy_m=60_000)
    b = locate_gps(30.25, 121.40, accuracy_m=60_000)  # 120 km east, both fixes 60 km loose

    assert not travel_is_impossible(a, T0, b, T0 + dt.timedelta(minutes=1))


def test_ip_countries_catch_only_journeys_no_position_inside_them_explains() -> None:
    china, usa = locate_ip("223.5.5.5"), locate_ip("8.8.8.8")
    beijing = locate_gps(*BEIJING)

    assert travel_is_impossible(china, T0, usa, T0 + dt.timedelta(minutes=10))
    assert not travel_is_impossible(china, T0, usa, T0 + dt.timedelta(hours=3))
    assert not travel_is_impossible(china, T0, beijing, T0 + dt.timedelta(minutes=1))
    assert not travel_is_impossible(locate_ip("1.0.16.1"), T0, beijing, T0)


def test_places_without_coordinates_have_no_distance_and_never_alarm() -> None:
    beijing = locate_gps(*BEIJING)

    assert distance_km(UNKNOWN, beijing) is None
    assert not travel_is_impossible(UNKNOWN, T0, beijing, T0)


# --- Keeping an IP -------------------------------------------------------------------------------

KEY = b"k" * 32


@pytest.mark.parametrize(
    ("ip", "full", "truncated"),
    [
        ("223.5.5.5", "223.5.5.5", "223.5.5.0"),
        ("2400:3200:abcd:1234::1", "2400:3200:abcd:1234::1", "2400:3200:abcd::"),
        ("2400:3200:0000:0000:0000:0000:0000:0001", "2400:3200::1", "2400:3200::"),
        ("::ffff:223.5.5.5", "223.5.5.5", "223.5.5.0"),
        (" 10.1.2.3 ", "10.1.2.3", "10.1.2.0"),
        ("2400:3200::1%eth0", "2400:3200::1", "2400:3200::"),
    ],
)
def test_full_and_truncated_storage(ip: str, full: str, truncated: str) -> None:
    assert ip_for_storage(ip, "full", KEY) == full
    assert ip_for_storage(ip, "truncated", KEY) == truncated


def test_hashed_storage_is_a_keyed_hash_of_the_address() -> None:
    stored = ip_for_storage("223.5.5.5", "hashed", KEY)

    assert stored == hmac.new(KEY, b"223.5.5.5", hashlib.sha256).hexdigest()[:32]
    assert stored is not None and len(stored) == 32 and "223" not in stored
    assert ip_for_storage("::ffff:223.5.5.5", "hashed", KEY) == stored
    assert ip_for_storage("223.5.5.5", "hashed", b"another key") != stored
    assert ip_for_storage("2400:3200::1", "hashed", KEY) == ip_for_storage(
        "2400:3200:0:0::0001", "hashed", KEY
    )


@pytest.mark.parametrize("mode", ["full", "truncated", "hashed"])
@pytest.mark.parametrize("ip", ["", "garbage", "1.2.3", "999.1.1.1", "2400:::1"])
def test_something_that_is_not_an_address_is_not_stored(ip: str, mode: str) -> None:
    assert ip_for_storage(ip, mode, KEY) is None


def test_storage_refuses_an_unknown_mode_or_hashing_without_a_key() -> None:
    with pytest.raises(ValueError, match=r"^mode: "):
        ip_for_storage("223.5.5.5", "partial", KEY)
    with pytest.raises(ValueError, match=r"^key: "):
        ip_for_storage("223.5.5.5", "hashed", b"")
