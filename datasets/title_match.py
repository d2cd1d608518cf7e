"""Matching movie titles of one catalogue (ML-100K) to another (ML-1M ``movies.dat``).

Titles look like ``Title (Year)``. Four stages, each tried only when the previous found no
candidate, each accepting a single candidate MovieID (``shared/data/README.md``, ml-100k):

1. ``exact``: the same string;
2. ``normalised``: the same year and the same key (accents stripped, lower case, ``&`` = ``and``,
   a trailing article moved to the front, one leading article dropped, only ``[a-z0-9]`` kept);
3. ``alt-title``: the same year and a shared key among the title variants (the main title, each
   parenthesised alternative title split on ``a.k.a.``, the part before ``:``, the part after
   `` - ``);
4. ``year+-1``: as stage 3 with the year off by one.

Several candidates in a stage give ``ambiguous``; no candidate in any stage gives ``none``.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

EXACT, NORMALISED, ALT_TITLE, NEAR_YEAR = "exact", "normalised", "alt-title", "year+-1"
AMBIGUOUS, NONE = "ambiguous", "none"

_ARTICLES = (
    "the",
    "a",
    "an",
    "il",
    "la",
    "le",
    "les",
    "l'",
    "das",
    "der",
    "die",
    "el",
    "los",
    "las",
)
_TITLE_YEAR = re.compile(r"(?P<base>.*) \((?P<year>[0-9]{4})\)")
_PARENTHESISED = re.compile(r"\(([^()]*)\)")
_NOT_KEY = re.compile(r"[^a-z0-9]")


@dataclass(frozen=True)
class TitleMatch:
    method: str  # one of the stage names, AMBIGUOUS or NONE
    movie_id: str | None  # the matched catalogue id (None for AMBIGUOUS and NONE)


def match_titles(titles: Sequence[str], catalogue: Mapping[str, str]) -> list[TitleMatch]:
    """Match each of ``titles`` to an id of ``catalogue`` (id -> title)."""
    index = _CatalogueIndex(catalogue)
    return [index.match(title) for title in titles]


def title_key(text: str) -> str:
    """The comparison key of one title (without its year)."""
    decomposed = unicodedata.normalize("NFKD", text)
    key = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    key = key.replace("&", "and").strip()
    for article in _ARTICLES:
        if key.endswith(f", {article}"):
            rest = key[: -len(article) - 2]
            key = f"{article}{rest}" if article.endswith("'") else f"{article} {rest}"
            break
    for article in _ARTICLES:
        prefix = article if article.endswith("'") else f"{article} "
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    return _NOT_KEY.sub("", key)


def title_variants(base: str) -> set[str]:
    """Keys of the variants of a title without its year (see the module docstring)."""
    main = _PARENTHESISED.sub("", base).strip()
    names = [main]
    for alternative in _PARENTHESISED.findall(base):
        names += [part.strip() for part in alternative.split("a.k.a.")]
    variants = []
    for name in names:
        variants.append(name)
        if ":" in name:
            variants.append(name.split(":", 1)[0])
        if " - " in name:
            variants.append(name.split(" - ", 1)[1])
    return {key for key in map(title_key, variants) if key}


def split_year(title: str) -> tuple[str, int] | None:
    """``("Toy Story", 1995)`` for ``"Toy Story (1995)"``; None without a trailing year."""
    found = _TITLE_YEAR.fullmatch(title)
    return (found["base"], int(found["year"])) if found else None


class _CatalogueIndex:
    def __init__(self, catalogue: Mapping[str, str]) -> None:
        self.exact: dict[str, set[str]] = defaultdict(set)
        self.normalised: dict[tuple[int, str], set[str]] = defaultdict(set)
        self.variants: dict[tuple[int, str], set[str]] = defaultdict(set)
        for movie_id, title in catalogue.items():
            self.exact[title].add(movie_id)
            parsed = split_year(title)
            if parsed is None:
                continue
            base, year = parsed
            self.normalised[(year, title_key(base))].add(movie_id)
            for key in title_variants(base):
                self.variants[(year, key)].add(movie_id)

    def match(self, title: str) -> TitleMatch:
        parsed = split_year(title)
        stages: list[tuple[str, set[str]]] = [(EXACT, self.exact.get(title, set()))]
        if parsed is not None:
            base, year = parsed
            keys = title_variants(base)
            stages += [
                (NORMALISED, self.normalised.get((year, title_key(base)), set())),
                (ALT_TITLE, self._by_variant(keys, (year,))),
                (NEAR_YEAR, self._by_variant(keys, (year - 1, year + 1))),
            ]
        for method, candidates in stages:
            if len(candidates) == 1:
                return TitleMatch(method, next(iter(candidates)))
            if candidates:
                return TitleMatch(AMBIGUOUS, None)
        return TitleMatch(NONE, None)

    def _by_variant(self, keys: set[str], years: Sequence[int]) -> set[str]:
        found: set[str] = set()
        for year in years:
            for key in keys:
                found |= self.variants.get((year, key), set())
        return found
