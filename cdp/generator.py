"""Deterministic sample landed files for the example ``retail`` workspace (``examples/retail``).

:func:`generate` writes, for each of ``days`` days ending at ``end_date``, the files the four
example datasets read::

    {out}/crm/{date}/crm_profiles_00000.csv             CRM export (header = crm_profile fields)
    {out}/loyalty/{date}/loyalty_members_00000.parquet  loyalty programme (typed Parquet)
    {out}/web/{date}/web_events_00000.jsonl             web analytics hits
    {out}/email/{date}/email_events_00000.jsonl         email service provider feedback

The model is made so that identity resolution matters: one person shows up in the CRM
(``crm_id``, email, phone), the loyalty programme (``loyalty_id``, often the CRM email written
differently), the web site (1-3 cookies, the ``crm_id`` on logged-in hits only) and the email
service provider (the email). The first day carries the full CRM and loyalty loads; each later day
carries updates of about :data:`DAILY_UPDATE_SHARE` of the existing records plus the records of
about :data:`DAILY_NEW_PERSON_SHARE` new persons, and events every day.

Determinism and scale. All randomness comes from ``numpy.random.Generator(PCG64)`` seeded by a
``SeedSequence`` of the main seed and a key. Persons and their daily events and updates are drawn
in fixed blocks of :data:`PERSON_BLOCK` consecutive person indexes, keyed by (stream, day, block):
a record depends only on the seed, the person and the day, never on ``chunk_size``, so any chunk
can be generated on its own and a chunked run writes the same good records as an unchunked one.
Persons are processed ``chunk_size`` at a time, each chunk written as its own file part, so memory
stays bounded by one chunk whatever the number of persons.

Bad records (see :data:`BAD_KINDS`) are injected per file, keyed by (dataset, day, part): each is a
corrupted copy of a good record inserted right after it, so the good records stay the same
whatever ``bad_share``.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- rates (per person, per day)

CRM_SHARE = 0.70                   # persons with a CRM record
LOYALTY_SHARE = 0.45               # persons in the loyalty programme
CRM_EMAIL_SHARE = 0.92             # CRM records with an email
CRM_PHONE_SHARE = 0.75             # CRM records with a phone
BIRTH_DATE_SHARE = 0.88            # CRM records with a birth date
CONSENT_SHARE = 0.62               # CRM records that consent to marketing
LOYALTY_SHARED_EMAIL_SHARE = 0.80  # loyalty members with a CRM email who gave the loyalty programme the same one
LOYALTY_OWN_EMAIL_SHARE = 0.95     # loyalty members without a CRM email who gave one
DAILY_UPDATE_SHARE = 0.02          # existing CRM / loyalty records updated each later day
DAILY_NEW_PERSON_SHARE = 0.005     # new persons each later day (relative to ``profiles``)
WEB_EVENTS_PER_PERSON_DAY = 2.0
EMAIL_EVENTS_PER_PERSON_DAY = 0.5  # per person with an email
LOGGED_IN_SHARE = 0.30             # web hits that carry the crm_id (of all hits)
COOKIE_COUNT_WEIGHTS = (0.55, 0.30, 0.15)  # 1, 2 or 3 cookies per person

# ---------------------------------------------------------------- bad records

MAX_BAD_SHARE = 0.03               # per file: stays well under the workspace's 10% rejection guardrail
MIN_RECORDS_FOR_EVERY_KIND = 200   # files this large get at least one bad record of every kind
BAD_KINDS: dict[str, tuple[str, ...]] = {
    "crm_profiles": ("wrong_column_count", "malformed_email", "missing_crm_id", "bad_updated_at"),
    "loyalty_members": ("unknown_tier", "missing_loyalty_id"),
    "web_events": ("broken_json", "missing_event_id", "unknown_event_type", "bad_timestamp", "blocked_identity",
                   "malformed_ecid"),
    "email_events": ("broken_json", "missing_event_id", "unknown_event_type", "bad_timestamp", "blocked_identity",
                     "malformed_email"),
}

# ---------------------------------------------------------------- layout and fields (schema order)

PERSON_BLOCK = 1_000               # persons per random stream: fixed, so records do not depend on chunk_size
DATASETS = ("crm_profiles", "loyalty_members", "web_events", "email_events")
FOLDERS = {"crm_profiles": "crm", "loyalty_members": "loyalty", "web_events": "web", "email_events": "email"}
EXTENSIONS = {"crm_profiles": "csv", "loyalty_members": "parquet", "web_events": "jsonl", "email_events": "jsonl"}
CRM_FIELDS = ("crm_id", "email", "phone", "first_name", "last_name", "birth_date", "country", "city",
              "consent_marketing", "updated_at")
LOYALTY_FIELDS = ("loyalty_id", "email", "tier", "points", "joined_on", "updated_at")
WEB_FIELDS = ("event_id", "event_type", "timestamp", "ecid", "crm_id", "page_url", "product_id", "revenue")
EMAIL_FIELDS = ("event_id", "event_type", "timestamp", "email", "campaign_id")
LOYALTY_ARROW_SCHEMA = pa.schema([
    ("loyalty_id", pa.string()),
    ("email", pa.string()),
    ("tier", pa.string()),
    ("points", pa.int64()),
    ("joined_on", pa.date32()),
    ("updated_at", pa.timestamp("us", tz="UTC")),
])

# ---------------------------------------------------------------- reference data

COUNTRIES = ("FR", "US", "DE", "GB", "ES", "IT", "BE", "NL")
COUNTRY_WEIGHTS = (0.30, 0.24, 0.12, 0.12, 0.08, 0.06, 0.04, 0.04)
CITIES = (
    ("Paris", "Lyon", "Marseille", "Toulouse", "Bordeaux", "Lille", "Nantes", "Strasbourg"),
    ("New York", "Los Angeles", "Chicago", "Houston", "San Francisco", "Seattle", "Boston", "Austin"),
    ("Berlin", "Hamburg", "München", "Köln", "Frankfurt am Main", "Stuttgart", "Düsseldorf", "Leipzig"),
    ("London", "Manchester", "Birmingham", "Leeds", "Glasgow", "Bristol", "Liverpool", "Edinburgh"),
    ("Madrid", "Barcelona", "Valencia", "Sevilla", "Zaragoza", "Málaga", "Bilbao", "Palma"),
    ("Roma", "Milano", "Napoli", "Torino", "Firenze", "Bologna", "Genova", "Venezia"),
    ("Bruxelles", "Antwerpen", "Gent", "Liège", "Charleroi", "Namur", "Brugge", "Leuven"),
    ("Amsterdam", "Rotterdam", "Den Haag", "Utrecht", "Eindhoven", "Groningen", "Tilburg", "Almere"),
)
EMAIL_DOMAINS = (
    ("gmail.com", "orange.fr", "free.fr", "hotmail.fr"),
    ("gmail.com", "yahoo.com", "outlook.com", "icloud.com"),
    ("gmail.com", "web.de", "gmx.de", "t-online.de"),
    ("gmail.com", "hotmail.co.uk", "btinternet.com", "outlook.com"),
    ("gmail.com", "hotmail.es", "yahoo.es", "outlook.es"),
    ("gmail.com", "libero.it", "virgilio.it", "hotmail.it"),
    ("gmail.com", "skynet.be", "telenet.be", "hotmail.com"),
    ("gmail.com", "ziggo.nl", "kpnmail.nl", "outlook.com"),
)
DOMAIN_WEIGHTS = (0.45, 0.25, 0.18, 0.12)
# Name pools by language; a country uses the pool of its language (Belgium French, the Netherlands German/Dutch).
FIRST_NAMES = (
    ("Jean", "Marie", "Camille", "Lucas", "Léa", "Hugo", "Chloé", "Louis", "Manon", "Théo", "Inès", "Nathalie"),
    ("James", "Mary", "John", "Patricia", "Michael", "Jennifer", "David", "Linda", "Emily", "Oliver", "Sophie",
     "Daniel"),
    ("Lukas", "Anna", "Leon", "Mia", "Jonas", "Lena", "Felix", "Hannah", "Paul", "Sophie", "Max", "Emma"),
    ("Hugo", "Lucía", "Martín", "Sofía", "Mateo", "María", "Pablo", "Paula", "Daniel", "Carmen", "Alejandro",
     "Elena"),
    ("Francesco", "Giulia", "Alessandro", "Chiara", "Lorenzo", "Sofia", "Matteo", "Aurora", "Leonardo", "Martina",
     "Andrea", "Giorgia"),
)
LAST_NAMES = (
    ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau", "Lefèvre",
     "Girard"),
    ("Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Taylor", "O'Brien", "Clarke",
     "Walker"),
    ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
     "de Vries", "Jansen"),
    ("García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez", "Pérez", "Gómez", "Ruiz",
     "Díaz", "Moreno"),
    ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino", "Greco", "Bruno",
     "Gallo"),
)
COUNTRY_LANGUAGE = (0, 1, 2, 1, 3, 4, 0, 2)
US_AREA_CODES = (212, 310, 312, 415, 617, 206, 512, 713, 305, 404, 646, 702)
DE_MOBILE_PREFIXES = (151, 152, 157, 160, 170, 171, 172, 176, 177, 179)
PHONE_FORMATS = 4
TIERS = ("bronze", "silver", "gold", "platinum")
TIER_WEIGHTS = (0.50, 0.30, 0.15, 0.05)
TIER_FLOORS = (0, 1_000, 5_000, 20_000, 60_000)  # points of tier i lie in [floor i, floor i+1)
WEB_EVENT_TYPES = ("page_view", "product_view", "add_to_cart", "purchase")
WEB_EVENT_WEIGHTS = (0.55, 0.30, 0.10, 0.05)
EMAIL_EVENT_TYPES = ("sent", "open", "click", "unsubscribe")
EMAIL_EVENT_WEIGHTS = (0.55, 0.30, 0.12, 0.03)
CAMPAIGNS_PER_DAY = 3
PRODUCTS = 5_000
SHOP = "https://shop.example"
PAGES = ("/", "/women", "/men", "/kids", "/sale", "/new-in", "/stores", "/help/delivery", "/search?q=sneakers",
         "/account")

# Random streams: part of every seed key, so two streams never share numbers.
_PERSONS, _CRM_UPDATES, _LOYALTY_UPDATES, _WEB, _EMAIL, _BAD = range(1, 7)
# Uniform draws per person, one row each (their order is part of the output: append, never reorder).
(_U_CRM, _U_LOYALTY, _U_COUNTRY, _U_CITY, _U_FIRST, _U_LAST, _U_EMAIL_PATTERN, _U_DOMAIN, _U_CRM_EMAIL,
 _U_EMAIL_TITLE, _U_PHONE, _U_PHONE_FORMAT, _U_BIRTH, _U_AGE, _U_CONSENT, _U_CRM_UPDATED, _U_SHARED_EMAIL,
 _U_EMAIL_VARIANT, _U_OWN_EMAIL, _U_TIER, _U_POINTS, _U_POINTS_RATE, _U_JOINED, _U_LOYALTY_UPDATED,
 _U_COOKIES) = range(25)
_N_UNIFORMS = 25
# Loyalty email: none, the CRM email (written in some variant), another address, the person's own (no CRM email).
_LOYALTY_NO_EMAIL, _LOYALTY_SHARED, _LOYALTY_OTHER, _LOYALTY_OWN = range(4)
_DAY_SECONDS = 86_400
_DAY_MS = 86_400_000
_WRITE_BATCH = 20_000              # rows serialised at a time


def _ascii_name(name: str) -> str:
    """The email form of a name: no accents, apostrophes or spaces, lower case."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _title_local(email: str) -> str:
    """``Jean.Martin12@gmail.com``: the capitals some people type in the local part of their email."""
    local, _, domain = email.partition("@")
    return f"{local.title()}@{domain}"


_FIRST = np.array(FIRST_NAMES, dtype=object)
_LAST = np.array(LAST_NAMES, dtype=object)
_FIRST_ASCII = np.array([[_ascii_name(n) for n in pool] for pool in FIRST_NAMES], dtype=object)
_LAST_ASCII = np.array([[_ascii_name(n) for n in pool] for pool in LAST_NAMES], dtype=object)
_CITIES = np.array(CITIES, dtype=object)
_DOMAINS = np.array(EMAIL_DOMAINS, dtype=object)
_COUNTRIES = np.array(COUNTRIES, dtype=object)
_TIERS = np.array(TIERS, dtype=object)
_WEB_TYPES = np.array(WEB_EVENT_TYPES, dtype=object)
_EMAIL_TYPES = np.array(EMAIL_EVENT_TYPES, dtype=object)
_PAGE_URLS = np.array([SHOP + page for page in PAGES], dtype=object)


# ---------------------------------------------------------------- summary


@dataclass(frozen=True)
class DatasetCounts:
    """What was written for one dataset over all days and parts."""

    dataset: str
    records: int            # rows / lines written, bad records and duplicates included
    bad: int                # bad records injected
    duplicates: int         # exact duplicate events (same event_id) injected; valid, so not counted as bad
    bad_by_kind: tuple[tuple[str, int], ...]
    files: int


@dataclass(frozen=True)
class GenerationSummary:
    """Outcome of :func:`generate`: counts per dataset and every file written."""

    out_dir: Path
    first_date: dt.date
    end_date: dt.date
    persons: int            # persons over the whole period (profiles + new persons of the later days)
    datasets: tuple[DatasetCounts, ...]
    files: tuple[Path, ...]

    def counts(self, dataset: str) -> DatasetCounts:
        """The counts of one dataset (KeyError if it is not one of :data:`DATASETS`)."""
        for counts in self.datasets:
            if counts.dataset == dataset:
                return counts
        raise KeyError(dataset)

    @property
    def records(self) -> dict[str, int]:
        return {c.dataset: c.records for c in self.datasets}

    @property
    def bad_records(self) -> dict[str, int]:
        return {c.dataset: c.bad for c in self.datasets}

    def __str__(self) -> str:
        lines = [f"{len(self.files)} files for {self.persons} persons, {self.first_date} to {self.end_date}, "
                 f"in {self.out_dir}"]
        for c in self.datasets:
            share = c.bad / c.records if c.records else 0.0
            lines.append(f"  {c.dataset:<16} {c.records:>10} records in {c.files:>4} files, {c.bad} bad "
                         f"({share:.2%}), {c.duplicates} duplicate event ids")
        return "\n".join(lines)


@dataclass
class _Tally:
    records: int = 0
    bad: int = 0
    duplicates: int = 0
    files: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------- plan and random streams


@dataclass(frozen=True)
class _Plan:
    seed: int
    profiles: int
    days: int
    first_date: dt.date
    new_per_day: int
    bad_share: float
    chunk_size: int

    @property
    def total_persons(self) -> int:
        return self.alive(self.days - 1)

    def alive(self, day: int) -> int:
        """Persons that exist on day ``day`` (0 = first day): indexes 0 .. alive-1."""
        return self.profiles + day * self.new_per_day

    def date(self, day: int) -> dt.date:
        return self.first_date + dt.timedelta(days=day)

    def epoch_day(self, day: int) -> int:
        return (self.date(day) - dt.date(1970, 1, 1)).days


def _rng(seed: int, *key: int) -> np.random.Generator:
    """The generator of one stream: a SeedSequence of the main seed and the key, so streams never overlap."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *key])))


def _pick(weights: tuple[float, ...], u: np.ndarray) -> np.ndarray:
    """Index of the weighted category each uniform falls in."""
    return np.searchsorted(np.cumsum(weights)[:-1], u, side="right")


def loyalty_ids(persons: np.ndarray) -> np.ndarray:
    """Loyalty card numbers of person indexes (``L`` and 7+ digits).

    A fixed permutation within each run of 10 million indexes, so the CRM and the loyalty
    programme number the same person differently, as two real systems would.
    """
    persons = np.asarray(persons, dtype=np.int64)
    scrambled = (persons % 10_000_000 * 3_141_593 + 2_718_281) % 10_000_000 + persons // 10_000_000 * 10_000_000
    return np.array([f"L{n + 1:07d}" for n in scrambled.tolist()], dtype=object)


def crm_ids(persons: np.ndarray) -> np.ndarray:
    """CRM customer ids of person indexes (``C`` and 7+ digits)."""
    return np.array([f"C{p + 1:07d}" for p in np.asarray(persons).tolist()], dtype=object)


# ---------------------------------------------------------------- persons


class _Persons:
    """Attributes of the persons of a block-aligned index range, as arrays (position = index - lo)."""

    def __init__(self, plan: _Plan, lo: int, hi: int) -> None:
        assert lo % PERSON_BLOCK == 0 and hi % PERSON_BLOCK == 0
        self.lo, self.hi = lo, hi
        uniforms, cookies = [], []
        for block in range(lo // PERSON_BLOCK, hi // PERSON_BLOCK):
            rng = _rng(plan.seed, _PERSONS, 0, block)
            uniforms.append(rng.random((_N_UNIFORMS, PERSON_BLOCK)))
            # An ecid is 38 digits: two 19-digit halves (10**19 < 2**64).
            cookies.append(rng.integers(0, 10**19, size=(6, PERSON_BLOCK), dtype=np.uint64))
        u = np.concatenate(uniforms, axis=1)
        self.cookies = np.concatenate(cookies, axis=1)
        n = hi - lo
        p = np.arange(lo, hi, dtype=np.int64)
        self.index = p
        if plan.new_per_day:
            self.arrival = np.where(p < plan.profiles, 0, 1 + (p - plan.profiles) // plan.new_per_day)
        else:
            self.arrival = np.zeros(n, dtype=np.int64)
        self.has_crm = u[_U_CRM] < CRM_SHARE
        self.has_loyalty = u[_U_LOYALTY] < LOYALTY_SHARE
        self.country = _pick(COUNTRY_WEIGHTS, u[_U_COUNTRY])
        self.language = np.asarray(COUNTRY_LANGUAGE)[self.country]
        # Capitals and big cities first: skew the city draw towards the head of each list.
        self.city = np.minimum((u[_U_CITY] ** 1.6 * len(CITIES[0])).astype(np.int64), len(CITIES[0]) - 1)
        self.first = (u[_U_FIRST] * len(FIRST_NAMES[0])).astype(np.int64)
        self.last = (u[_U_LAST] * len(LAST_NAMES[0])).astype(np.int64)
        self.email_pattern = (u[_U_EMAIL_PATTERN] * 4).astype(np.int64)
        self.domain = _pick(DOMAIN_WEIGHTS, u[_U_DOMAIN])
        self.crm_email = self.has_crm & (u[_U_CRM_EMAIL] < CRM_EMAIL_SHARE)
        self.email_title = u[_U_EMAIL_TITLE] < 0.15
        self.phone = u[_U_PHONE] < CRM_PHONE_SHARE
        self.phone_format = (u[_U_PHONE_FORMAT] * PHONE_FORMATS).astype(np.int64)
        # Phone digits from a fixed permutation of the person index (offset by the seed): no two persons
        # share a number, which would merge them in the identity graph.
        self.phone_digits = (p * 61_803_399 + (plan.seed * 7_777_777 + 12_345) % 10**10) % 10**10
        self.birth = u[_U_BIRTH] < BIRTH_DATE_SHARE
        day0 = plan.epoch_day(0)
        self.birth_days = day0 - np.floor((18 + u[_U_AGE] * 67) * 365.25).astype(np.int64)
        self.consent = u[_U_CONSENT] < CONSENT_SHARE
        arrival_start = (day0 + self.arrival) * _DAY_SECONDS
        # First-day records were last updated some time in the last two years; a new person's record that day.
        self.crm_updated = np.where(
            self.arrival == 0,
            arrival_start + _DAY_SECONDS - 1 - (u[_U_CRM_UPDATED] * 730 * _DAY_SECONDS).astype(np.int64),
            arrival_start + (u[_U_CRM_UPDATED] * _DAY_SECONDS).astype(np.int64))
        self.loyalty_email = np.select(
            [self.has_loyalty & self.crm_email & (u[_U_SHARED_EMAIL] < LOYALTY_SHARED_EMAIL_SHARE),
             self.has_loyalty & self.crm_email,
             self.has_loyalty & (u[_U_OWN_EMAIL] < LOYALTY_OWN_EMAIL_SHARE)],
            [_LOYALTY_SHARED, _LOYALTY_OTHER, _LOYALTY_OWN], _LOYALTY_NO_EMAIL)
        self.email_variant = _pick((0.35, 0.25, 0.20, 0.20), u[_U_EMAIL_VARIANT])
        self.tier = _pick(TIER_WEIGHTS, u[_U_TIER])
        floors = np.asarray(TIER_FLOORS)
        self.points = floors[self.tier] + (u[_U_POINTS] * (floors[self.tier + 1] - floors[self.tier])).astype(np.int64)
        self.points_rate = -np.log1p(-u[_U_POINTS_RATE]) * 12.0  # points earned per day, exponential (mean 12)
        self.joined_days = np.where(self.arrival == 0, day0 - (u[_U_JOINED] * 8 * 365).astype(np.int64),
                                    day0 + self.arrival)
        span = (day0 + self.arrival + 1 - self.joined_days) * _DAY_SECONDS
        self.loyalty_updated = self.joined_days * _DAY_SECONDS + (u[_U_LOYALTY_UPDATED] * span).astype(np.int64)
        self.n_cookies = 1 + _pick(COOKIE_COUNT_WEIGHTS, u[_U_COOKIES])
        # The email service provider writes to the CRM email, else to the one given to the loyalty programme.
        self.emailable = self.crm_email | (self.loyalty_email == _LOYALTY_OWN)
        self._local: np.ndarray | None = None

    @property
    def email_local(self) -> np.ndarray:
        """Local part of each person's email (unique: it ends with the person index)."""
        if self._local is None:
            first = _FIRST_ASCII[self.language, self.first]
            last = _LAST_ASCII[self.language, self.last]
            patterns = ("{f}.{l}{p}", "{i}{l}{p}", "{f}_{l}{p}", "{l}.{f}{p}")
            self._local = np.array(
                [patterns[k].format(f=f, l=la, i=f[0], p=p)
                 for k, f, la, p in zip(self.email_pattern.tolist(), first.tolist(), last.tolist(),
                                        self.index.tolist(), strict=True)], dtype=object)
        return self._local

    def canonical_email(self, rows: np.ndarray, other_domain: bool = False) -> np.ndarray:
        """The email of persons at ``rows`` as a mail server would write it (lower case, no spaces)."""
        domain = (self.domain[rows] + (1 if other_domain else 0)) % len(DOMAIN_WEIGHTS)
        return self.email_local[rows] + "@" + _DOMAINS[self.country[rows], domain]

    def crm_email_text(self, rows: np.ndarray) -> np.ndarray:
        """The CRM's email field: canonical, sometimes title-cased; None where the record has no email."""
        canonical = self.canonical_email(rows)
        titled = np.array([_title_local(e) if t else e
                           for e, t in zip(canonical.tolist(), self.email_title[rows].tolist(), strict=True)],
                          dtype=object)
        return _none_unless(self.crm_email[rows], titled)

    def loyalty_email_text(self, rows: np.ndarray) -> np.ndarray:
        """The loyalty programme's email field: the same address as the CRM's, written differently, so that
        only a normalised comparison (trim + lower) links the two records."""
        kind = self.loyalty_email[rows]
        same = np.where(self.email_title[rows] & (kind == _LOYALTY_SHARED), self.crm_email_text(rows),
                        self.canonical_email(rows))
        variants = [
            same,
            np.array([e.upper() for e in same.tolist()], dtype=object),
            "  " + same + " ",
            " " + np.array([_title_local(e) for e in same.tolist()], dtype=object) + "  ",
        ]
        written = np.choose(self.email_variant[rows], variants)
        written[kind == _LOYALTY_OTHER] = self.canonical_email(rows[kind == _LOYALTY_OTHER], other_domain=True)
        return _none_unless(kind != _LOYALTY_NO_EMAIL, written)

    def esp_email(self, rows: np.ndarray) -> np.ndarray:
        """The address the email service provider uses: the canonical CRM (or loyalty) email."""
        return self.canonical_email(rows)

    def ecid(self, rows: np.ndarray, cookie: np.ndarray) -> np.ndarray:
        """The 38-digit cookie id number ``cookie`` (0-2) of persons at ``rows``."""
        high = self.cookies[2 * cookie, rows].tolist()
        low = self.cookies[2 * cookie + 1, rows].tolist()
        return np.array([f"{h:019d}{lo:019d}" for h, lo in zip(high, low, strict=True)], dtype=object)


def _phone(country: int, digits: int, variant: int) -> str:
    """A mobile number of a country in one of the ways people write it (one of PHONE_FORMATS).

    Only characters a phone format check accepts (+, digits, spaces, parentheses, dots, dashes): the
    mess is in the layout and the national or international prefix, not in invalid values.
    """
    code = COUNTRIES[country]
    if code in ("FR", "NL"):
        s = f"{digits % 10**8:08d}"
        if code == "NL":
            return (f"+31 6 {s}", f"06-{s}", f"+316{s}", f"06 {s[:2]} {s[2:4]} {s[4:6]} {s[6:]}")[variant]
        lead = "67"[digits // 10**8 % 2]
        pairs = f"{s[:2]} {s[2:4]} {s[4:6]} {s[6:]}"
        return (f"+33 {lead} {pairs}", f"0{lead} {pairs}", f"+33{lead}{s}",
                f"0{lead}.{pairs.replace(' ', '.')}")[variant]
    if code == "US":
        area = US_AREA_CODES[digits % len(US_AREA_CODES)]
        exchange = 200 + digits // 100 % 800
        line = digits // 100_000 % 10_000
        return (f"({area}) {exchange}-{line:04d}", f"+1 {area}-{exchange}-{line:04d}", f"{area}.{exchange}.{line:04d}",
                f"+1{area}{exchange}{line:04d}")[variant]
    if code == "GB":
        prefix, s = 7700 + digits // 10**6 % 300, f"{digits % 10**6:06d}"
        return (f"+44 {prefix} {s}", f"0{prefix} {s}", f"+44{prefix}{s}", f"+44 (0){prefix} {s}")[variant]
    if code == "DE":
        prefix, s = DE_MOBILE_PREFIXES[digits // 10**8 % len(DE_MOBILE_PREFIXES)], f"{digits % 10**8:08d}"
        return (f"+49 {prefix} {s}", f"0{prefix} {s}", f"+49{prefix}{s}", f"0{prefix}-{s}")[variant]
    if code == "ES":
        s = f"{digits % 10**8:08d}"
        return (f"+34 6{s[:2]} {s[2:4]} {s[4:6]} {s[6:]}", f"6{s[:2]} {s[2:4]} {s[4:6]} {s[6:]}", f"+346{s}",
                f"0034 6{s[:2]} {s[2:5]} {s[5:]}")[variant]
    if code == "IT":
        prefix, s = 320 + digits // 10**7 % 80, f"{digits % 10**7:07d}"
        return (f"+39 {prefix} {s[:3]} {s[3:]}", f"{prefix} {s[:3]} {s[3:]}", f"+39{prefix}{s}",
                f"0039 {prefix} {s}")[variant]
    prefix, s = 470 + digits // 10**6 % 30, f"{digits % 10**6:06d}"  # BE
    return (f"+32 {prefix} {s[:2]} {s[2:4]} {s[4:]}", f"0{prefix} {s[:2]} {s[2:4]} {s[4:]}", f"+32{prefix}{s}",
            f"0{prefix}.{s[:2]}.{s[2:4]}.{s[4:]}")[variant]


# ---------------------------------------------------------------- records of one chunk and day


def _none_unless(present: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` as an object array with None (a missing value) where ``present`` is false."""
    out = values.astype(object)
    out[~present] = None
    return out


def _iso_seconds(seconds: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s", timezone="UTC").astype(object)


def _iso_millis(millis: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(millis.astype("datetime64[ms]"), unit="ms", timezone="UTC").astype(object)


def _iso_dates(days: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(days.astype("datetime64[D]")).astype(object)


def _block_uniforms(plan: _Plan, stream: int, day: int, persons: _Persons, rows: int) -> np.ndarray:
    """``rows`` uniforms per person of the persons' blocks, from the (stream, day, block) generators."""
    return np.concatenate([_rng(plan.seed, stream, plan.epoch_day(day), block).random((rows, PERSON_BLOCK))
                           for block in range(persons.lo // PERSON_BLOCK, persons.hi // PERSON_BLOCK)], axis=1)


def _changed(plan: _Plan, stream: int, day: int, persons: _Persons, has_record: np.ndarray, lo: int, hi: int,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the records a day carries for persons lo..hi-1: updates of existing records and new records.

    Returns (rows, is_update, uniform for the change, updated_at of updates in epoch seconds).
    """
    u = _block_uniforms(plan, stream, day, persons, 3)
    in_range = (persons.index >= lo) & (persons.index < hi)
    if day == 0:
        wanted = in_range & has_record & (persons.arrival == 0)
        update = np.zeros(persons.index.size, dtype=bool)
    else:
        update = in_range & has_record & (persons.arrival < day) & (u[0] < DAILY_UPDATE_SHARE)
        wanted = update | (in_range & has_record & (persons.arrival == day))
    rows = np.flatnonzero(wanted)
    updated = (plan.epoch_day(day) * _DAY_SECONDS + (u[2, rows] * _DAY_SECONDS).astype(np.int64))
    return rows, update[rows], u[1, rows], updated


def _crm_records(plan: _Plan, persons: _Persons, day: int, lo: int, hi: int) -> dict[str, np.ndarray]:
    rows, update, change, updated = _changed(plan, _CRM_UPDATES, day, persons, persons.has_crm, lo, hi)
    # An update is a move (another city of the same country) or a changed marketing consent.
    moved = update & (change < 0.6)
    city = np.where(moved, (persons.city[rows] + 1 + (change * 7 / 0.6).astype(np.int64)) % len(CITIES[0]),
                    persons.city[rows])
    consent = np.where(update & ~moved, ~persons.consent[rows], persons.consent[rows])
    country = persons.country[rows]
    phones = np.array([_phone(c, d, v) if has else None for c, d, v, has in zip(
        country.tolist(), persons.phone_digits[rows].tolist(), persons.phone_format[rows].tolist(),
        persons.phone[rows].tolist(), strict=True)], dtype=object)
    language = persons.language[rows]
    return {
        "crm_id": crm_ids(persons.index[rows]),
        "email": persons.crm_email_text(rows),
        "phone": phones,
        "first_name": _FIRST[language, persons.first[rows]],
        "last_name": _LAST[language, persons.last[rows]],
        "birth_date": _none_unless(persons.birth[rows], _iso_dates(persons.birth_days[rows])),
        "country": _COUNTRIES[country],
        "city": _CITIES[country, city],
        "consent_marketing": consent.astype(object),
        "updated_at": _iso_seconds(np.where(update, updated, persons.crm_updated[rows])),
    }


def _loyalty_records(plan: _Plan, persons: _Persons, day: int, lo: int, hi: int) -> dict[str, np.ndarray]:
    rows, update, _, updated = _changed(plan, _LOYALTY_UPDATES, day, persons, persons.has_loyalty, lo, hi)
    # Points only grow (a per-member daily rate), and the tier follows the points: an update is a new
    # balance, sometimes a new tier, consistent with every earlier and later update.
    points = persons.points[rows] + np.where(
        update, (persons.points_rate[rows] * (day - persons.arrival[rows])).astype(np.int64), 0)
    tier = np.minimum(np.searchsorted(np.asarray(TIER_FLOORS), points, side="right") - 1, len(TIERS) - 1)
    return {
        "loyalty_id": loyalty_ids(persons.index[rows]),
        "email": persons.loyalty_email_text(rows),
        "tier": _TIERS[tier],
        "points": points.astype(np.int64),
        "joined_on": persons.joined_days[rows].astype("datetime64[D]"),
        "updated_at": np.where(update, updated, persons.loyalty_updated[rows]).astype("datetime64[s]"),
    }


def _event_blocks(plan: _Plan, stream: int, day: int, persons: _Persons, rate: float, eligible: np.ndarray,
                  lo: int, hi: int, n_uniforms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Events of persons lo..hi-1 on a day: (person rows, timestamps in ms, uniforms (n, E), event ids).

    Drawn per (stream, day, block) for every person of the block, then cut to lo..hi-1, so an event
    does not depend on how persons are chunked. Events are ordered by person, then time.
    """
    day_start = plan.epoch_day(day) * _DAY_MS
    out_rows, out_ts, out_u, out_ids = [], [], [], []
    for block in range(persons.lo // PERSON_BLOCK, persons.hi // PERSON_BLOCK):
        rng = _rng(plan.seed, stream, plan.epoch_day(day), block)
        start = block * PERSON_BLOCK - persons.lo
        counts = rng.poisson(rate, PERSON_BLOCK)
        counts[~eligible[start:start + PERSON_BLOCK]] = 0
        rows = np.repeat(np.arange(start, start + PERSON_BLOCK), counts)
        ts = day_start + (rng.random(rows.size) * _DAY_MS).astype(np.int64)
        u = rng.random((n_uniforms, rows.size))
        order = np.lexsort((ts, rows))
        rows, ts, u = rows[order], ts[order], u[:, order]
        ids = rng.bytes(16 * rows.size).hex()
        keep = (persons.index[rows] >= lo) & (persons.index[rows] < hi)
        out_rows.append(rows[keep])
        out_ts.append(ts[keep])
        out_u.append(u[:, keep])
        out_ids.append(np.array([ids[32 * i:32 * i + 32] for i in np.flatnonzero(keep).tolist()], dtype=object))
    return (np.concatenate(out_rows), np.concatenate(out_ts), np.concatenate(out_u, axis=1),
            np.concatenate(out_ids))


def _alive_mask(plan: _Plan, persons: _Persons, day: int) -> np.ndarray:
    return persons.index < plan.alive(day)


def _web_records(plan: _Plan, persons: _Persons, day: int, lo: int, hi: int) -> dict[str, np.ndarray]:
    rows, ts, u, ids = _event_blocks(plan, _WEB, day, persons, WEB_EVENTS_PER_PERSON_DAY,
                                     _alive_mask(plan, persons, day), lo, hi, 6)
    event_type = _pick(WEB_EVENT_WEIGHTS, u[0])
    cookie = (u[1] * persons.n_cookies[rows]).astype(np.int64)
    # Only customers with a CRM record can log in; the share is of all hits.
    logged_in = persons.has_crm[rows] & (u[2] < min(1.0, LOGGED_IN_SHARE / CRM_SHARE))
    # Strings only where a value is present: a chunk holds millions of them otherwise.
    crm_id = np.full(rows.size, None, dtype=object)
    crm_id[logged_in] = crm_ids(persons.index[rows[logged_in]])
    with_product = np.flatnonzero(event_type > 0)
    product = np.full(rows.size, None, dtype=object)
    # Popular products first: the square skews the draw towards the head of the catalogue.
    product[with_product] = [f"P{n:05d}" for n in (u[3, with_product] ** 2 * PRODUCTS).astype(np.int64).tolist()]
    url = _PAGE_URLS[(u[4] * len(PAGES)).astype(np.int64)]
    viewed = event_type == 1
    url[viewed] = SHOP + "/products/" + product[viewed]
    url[event_type == 2] = SHOP + "/cart"
    purchase = event_type == 3
    url[purchase] = SHOP + "/checkout/confirmation"
    revenue = np.full(rows.size, None, dtype=object)
    # Basket values from 12 to 450, most of them small (log scale, skewed towards the low end).
    revenue[purchase] = np.round(np.exp(np.log(12.0) + u[5, purchase] ** 1.5 * np.log(450.0 / 12.0)), 2).tolist()
    return {
        "event_id": ids,
        "event_type": _WEB_TYPES[event_type],
        "timestamp": _iso_millis(ts),
        "ecid": persons.ecid(rows, cookie),
        "crm_id": crm_id,
        "page_url": url,
        "product_id": product,
        "revenue": revenue,
    }


def _email_records(plan: _Plan, persons: _Persons, day: int, lo: int, hi: int) -> dict[str, np.ndarray]:
    rows, ts, u, ids = _event_blocks(plan, _EMAIL, day, persons, EMAIL_EVENTS_PER_PERSON_DAY,
                                     _alive_mask(plan, persons, day) & persons.emailable, lo, hi, 2)
    stamp = plan.date(day).strftime("%Y%m%d")
    campaign = np.array([f"cmp-{stamp}-{n + 1}" for n in (u[1] * CAMPAIGNS_PER_DAY).astype(np.int64).tolist()],
                        dtype=object)
    return {
        "event_id": ids,
        "event_type": _EMAIL_TYPES[_pick(EMAIL_EVENT_WEIGHTS, u[0])],
        "timestamp": _iso_millis(ts),
        "email": persons.esp_email(rows),
        "campaign_id": campaign,
    }


# ---------------------------------------------------------------- bad records


def _bad_plan(n: int, kinds: int, bad_share: float, duplicate: bool, rng: np.random.Generator,
              ) -> tuple[np.ndarray, np.ndarray]:
    """Where to insert bad records (and a duplicate) among ``n`` good ones.

    Returns (take, kind): the source row of every output row, and per output row -1 (good), the bad
    kind index, or ``kinds`` (an exact duplicate). Each injected row follows its source row.
    """
    if bad_share <= 0 or n == 0:
        return np.arange(n), np.full(n, -1)
    n_bad = round(bad_share * n)
    if n >= MIN_RECORDS_FOR_EVERY_KIND:
        n_bad = max(n_bad, kinds)
    n_bad = min(n_bad, math.floor(MAX_BAD_SHARE * n))
    n_dup = 1 if duplicate and n > n_bad + 1 else 0
    if n_bad >= kinds:  # every kind once, the rest at random
        bad_kinds = np.concatenate([np.arange(kinds), rng.integers(0, kinds, n_bad - kinds)])
    else:
        bad_kinds = rng.choice(kinds, n_bad, replace=False)
    injected = np.concatenate([rng.permutation(bad_kinds), np.full(n_dup, kinds)])
    sources = rng.choice(n, n_bad + n_dup, replace=False)
    order = np.argsort(sources, kind="stable")
    sources, injected = sources[order], injected[order]
    take = np.insert(np.arange(n), sources + 1, sources)
    kind = np.full(take.size, -1)
    kind[sources + 1 + np.arange(sources.size)] = injected
    return take, kind


def _bad_timestamps(rng: np.random.Generator, n: int, date: dt.date) -> np.ndarray:
    choices = np.array([f"{date.isoformat()}T25:61:00Z", "not-a-timestamp", f"{date:%d/%m/%Y} 10:00"], dtype=object)
    return choices[rng.integers(0, choices.size, n)]


def _malformed_emails(rng: np.random.Generator, emails: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Emails a format check rejects: no @, or two."""
    base = [(e if e is not None else f).strip().lower()
            for e, f in zip(emails.tolist(), fallback.tolist(), strict=True)]
    how = rng.integers(0, 2, len(base)).tolist()
    return np.array([e.replace("@", "") if h == 0 else e.replace("@", "@@") for e, h in zip(base, how, strict=True)],
                    dtype=object)


def _event_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    ids = rng.bytes(16 * n).hex()
    return np.array([ids[32 * i:32 * i + 32] for i in range(n)], dtype=object)


def _corrupt_events(columns: dict[str, np.ndarray], kind: np.ndarray, kinds: tuple[str, ...], identity: str,
                    rng: np.random.Generator, date: dt.date) -> None:
    """Apply the value-level bad kinds to injected event rows (JSON-level kinds are applied when writing)."""
    injected = np.flatnonzero((kind >= 0) & (kind < len(kinds)))
    # A corrupted copy gets its own event id: it is an extra (rejected) event, not a duplicate of its source.
    columns["event_id"][injected] = _event_ids(rng, injected.size)
    for k, name in enumerate(kinds):
        rows = np.flatnonzero(kind == k)
        if name == "unknown_event_type":
            wrong = ("pageview", "checkout_start", "search") if identity == "ecid" else ("bounce", "spam_report")
            columns["event_type"][rows] = np.array(wrong, dtype=object)[rng.integers(0, len(wrong), rows.size)]
        elif name == "bad_timestamp":
            columns["timestamp"][rows] = _bad_timestamps(rng, rows.size, date)
        elif name == "blocked_identity":
            columns[identity][rows] = np.array(["anonymous", "null"], dtype=object)[rng.integers(0, 2, rows.size)]
        elif name == "malformed_ecid":
            ecids = columns["ecid"][rows].tolist()
            how = rng.integers(0, 3, rows.size).tolist()
            columns["ecid"][rows] = np.array([(e[:36], e[:30] + "abcdefgh", e + "42")[h] for e, h in
                                              zip(ecids, how, strict=True)], dtype=object)
        elif name == "malformed_email":
            columns["email"][rows] = _malformed_emails(rng, columns["email"][rows], columns["email"][rows])


def _corrupt_crm(columns: dict[str, np.ndarray], kind: np.ndarray, rng: np.random.Generator, date: dt.date) -> None:
    kinds = BAD_KINDS["crm_profiles"]
    rows = np.flatnonzero(kind == kinds.index("malformed_email"))
    fallback = np.array([f"{f}.{la}".lower().replace(" ", "") + "@example.com" for f, la in zip(
        columns["first_name"][rows].tolist(), columns["last_name"][rows].tolist(), strict=True)], dtype=object)
    columns["email"][rows] = _malformed_emails(rng, columns["email"][rows], fallback)
    columns["crm_id"][kind == kinds.index("missing_crm_id")] = None
    rows = np.flatnonzero(kind == kinds.index("bad_updated_at"))
    columns["updated_at"][rows] = _bad_timestamps(rng, rows.size, date)
    # wrong_column_count is written as a row whose city holds an unquoted comma (see _write_csv).


# ---------------------------------------------------------------- writers


def _json_tokens(values: np.ndarray) -> np.ndarray:
    """JSON text of each value: strings quoted (generated values never need escaping), None as null."""
    if values.size == 0:
        return values.astype(object)
    is_null = np.fromiter((v is None for v in values.tolist()), dtype=bool, count=values.size)
    out = np.empty(values.size, dtype=object)
    out[is_null] = "null"
    present = values[~is_null]
    if present.size:
        if isinstance(present[0], str):
            out[~is_null] = '"' + present.astype(object) + '"'
        else:  # revenue: always two decimals, as an amount
            out[~is_null] = np.array([f"{v:.2f}" for v in present.tolist()], dtype=object)
    return out


def _write_jsonl(path: Path, names: tuple[str, ...], columns: dict[str, np.ndarray], kind: np.ndarray,
                 kinds: tuple[str, ...], rng: np.random.Generator) -> None:
    template = "{" + ",".join(f'"{name}":%s' for name in names) + "}"
    without_id = "{" + ",".join(f'"{name}":%s' for name in names[1:]) + "}"
    missing = kinds.index("missing_event_id")
    broken = kinds.index("broken_json")
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        # In batches: the JSON text of a whole chunk would be several times the size of its values.
        for start in range(0, kind.size, _WRITE_BATCH):
            stop = min(start + _WRITE_BATCH, kind.size)
            tokens = [_json_tokens(columns[name][start:stop]) for name in names]
            lines = [template % row for row in zip(*tokens, strict=True)]
            batch_kind = kind[start:stop]
            for i in np.flatnonzero(batch_kind == missing).tolist():
                lines[i] = without_id % tuple(t[i] for t in tokens[1:])
            for i in np.flatnonzero(batch_kind == broken).tolist():
                # A write cut short: any proper prefix of a one-level object lacks its closing brace.
                lines[i] = lines[i][: int(rng.integers(10, len(lines[i]) - 1))]
            handle.writelines(line + "\n" for line in lines)


def _csv_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


def _write_csv(path: Path, columns: dict[str, np.ndarray], kind: np.ndarray) -> None:
    wrong_columns = BAD_KINDS["crm_profiles"].index("wrong_column_count")
    city_at = CRM_FIELDS.index("city")
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CRM_FIELDS)
        values = [columns[name].tolist() for name in CRM_FIELDS]
        for row, k in zip(zip(*values, strict=True), kind.tolist(), strict=True):
            texts = [_csv_text(v) for v in row]
            if k == wrong_columns:
                # "Paris, France" exported without quotes: the comma splits the row into one column too many.
                texts[city_at:city_at + 1] = [texts[city_at], " " + texts[CRM_FIELDS.index("country")]]
            writer.writerow(texts)


def _write_parquet(path: Path, columns: dict[str, np.ndarray]) -> None:
    table = pa.Table.from_arrays([
        pa.array(columns["loyalty_id"].tolist(), type=pa.string()),
        pa.array(columns["email"].tolist(), type=pa.string()),
        pa.array(columns["tier"].tolist(), type=pa.string()),
        pa.array(columns["points"], type=pa.int64()),
        pa.array(columns["joined_on"], type=pa.date32()),
        pa.array(columns["updated_at"].astype("datetime64[us]"), type=pa.timestamp("us", tz="UTC")),
    ], schema=LOYALTY_ARROW_SCHEMA)
    pq.write_table(table, path, compression="snappy")


_BUILDERS: dict[str, Callable[[_Plan, _Persons, int, int, int], dict[str, np.ndarray]]] = {
    "crm_profiles": _crm_records,
    "loyalty_members": _loyalty_records,
    "web_events": _web_records,
    "email_events": _email_records,
}


def _write_part(plan: _Plan, dataset: str, persons: _Persons, day: int, part: int, lo: int, hi: int,
                path: Path, tally: _Tally) -> None:
    """Build, corrupt and write one dataset's records of persons lo..hi-1 on one day."""
    columns = _BUILDERS[dataset](plan, persons, day, lo, hi)
    n = len(next(iter(columns.values())))
    kinds = BAD_KINDS[dataset]
    rng = _rng(plan.seed, _BAD, DATASETS.index(dataset), plan.epoch_day(day), part)
    take, kind = _bad_plan(n, len(kinds), plan.bad_share, dataset == "web_events", rng)
    columns = {name: values[take] for name, values in columns.items()}
    date = plan.date(day)
    if dataset == "crm_profiles":
        _corrupt_crm(columns, kind, rng, date)
        _write_csv(path, columns, kind)
    elif dataset == "loyalty_members":
        columns["tier"][kind == kinds.index("unknown_tier")] = "diamond"
        columns["loyalty_id"][kind == kinds.index("missing_loyalty_id")] = None
        _write_parquet(path, columns)
    else:
        _corrupt_events(columns, kind, kinds, "ecid" if dataset == "web_events" else "email", rng, date)
        _write_jsonl(path, WEB_FIELDS if dataset == "web_events" else EMAIL_FIELDS, columns, kind, kinds, rng)
    tally.records += take.size
    tally.bad += int(np.count_nonzero((kind >= 0) & (kind < len(kinds))))
    tally.duplicates += int(np.count_nonzero(kind == len(kinds)))
    tally.files += 1
    for k, name in enumerate(kinds):
        tally.by_kind[name] = tally.by_kind.get(name, 0) + int(np.count_nonzero(kind == k))


def part_path(out_dir: Path, dataset: str, date: dt.date, part: int) -> Path:
    """Where part ``part`` of a dataset's files of a day lands (the example workspace's source paths)."""
    return out_dir / FOLDERS[dataset] / date.isoformat() / f"{dataset}_{part:05d}.{EXTENSIONS[dataset]}"


def generate(out_dir: Path, profiles: int, days: int, seed: int, end_date: dt.date,
             bad_share: float = 0.01, chunk_size: int = 100_000) -> GenerationSummary:
    """Write the landed files of the example retail workspace for the ``days`` days ending at ``end_date``.

    ``profiles`` persons exist on the first day (which carries the full CRM and loyalty loads);
    every later day adds about ``DAILY_NEW_PERSON_SHARE * profiles`` persons and carries updates.
    Persons are handled ``chunk_size`` at a time, each chunk written as its own file part
    (``_00000``, ``_00001``, ...), so memory stays bounded by one chunk. ``bad_share`` of each
    file's records (at most :data:`MAX_BAD_SHARE`; 0 injects none, nor the duplicate event) are
    bad records of the kinds in :data:`BAD_KINDS`. The same arguments give byte-identical files.
    Part files of an earlier run left in the day folders written are removed first.
    """
    if profiles < 1 or days < 1 or chunk_size < 1:
        raise ValueError("profiles, days and chunk_size must be at least 1")
    if seed < 0:
        raise ValueError("seed must be a non-negative integer")
    if not 0.0 <= bad_share <= MAX_BAD_SHARE:
        raise ValueError(f"bad_share must be between 0 and {MAX_BAD_SHARE}")
    out_dir = Path(out_dir)
    plan = _Plan(seed=seed, profiles=profiles, days=days, first_date=end_date - dt.timedelta(days=days - 1),
                 new_per_day=round(profiles * DAILY_NEW_PERSON_SHARE), bad_share=bad_share, chunk_size=chunk_size)
    _clear_old_parts(plan, out_dir)
    tallies = {dataset: _Tally() for dataset in DATASETS}
    files: list[Path] = []
    chunks = math.ceil(plan.total_persons / chunk_size)
    for part in range(chunks):
        lo, hi = part * chunk_size, min((part + 1) * chunk_size, plan.total_persons)
        # Whole blocks around the chunk: a block's random stream is drawn in full, then cut to the chunk.
        persons = _Persons(plan, lo // PERSON_BLOCK * PERSON_BLOCK, math.ceil(hi / PERSON_BLOCK) * PERSON_BLOCK)
        for day in range(days):
            if lo >= plan.alive(day):
                continue  # this chunk's persons arrive later
            for dataset in DATASETS:
                path = part_path(out_dir, dataset, plan.date(day), part)
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_part(plan, dataset, persons, day, part, lo, min(hi, plan.alive(day)), path, tallies[dataset])
                files.append(path)
        log.info("generated part %d of %d (persons %d-%d)", part + 1, chunks, lo, hi - 1)
    summary = GenerationSummary(
        out_dir=out_dir, first_date=plan.first_date, end_date=end_date, persons=plan.total_persons,
        datasets=tuple(DatasetCounts(dataset=d, records=t.records, bad=t.bad, duplicates=t.duplicates,
                                     bad_by_kind=tuple((k, t.by_kind.get(k, 0)) for k in BAD_KINDS[d]), files=t.files)
                       for d, t in tallies.items()),
        files=tuple(sorted(files)))
    log.info("%s", summary)
    return summary


def _clear_old_parts(plan: _Plan, out_dir: Path) -> None:
    """Remove part files an earlier run left in the day folders about to be written (another chunk size
    would otherwise leave stale parts next to the new ones)."""
    removed = 0
    for day in range(plan.days):
        for dataset in DATASETS:
            folder = part_path(out_dir, dataset, plan.date(day), 0).parent
            if folder.is_dir():
                for old in sorted(folder.glob(f"{dataset}_[0-9][0-9][0-9][0-9][0-9].{EXTENSIONS[dataset]}")):
                    old.unlink()
                    removed += 1
    if removed:
        log.info("removed %d part files of an earlier run under %s", removed, out_dir)
