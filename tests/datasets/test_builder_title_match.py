"""Title matching stages (ML-100K titles -> movies.dat MovieIDs) on hand-made catalogues.

The full ML-100K match is compared with shared/data's title_match.tsv in
test_builder_movielens.py.
"""

from __future__ import annotations

import pytest

from spectune.datasets.title_match import (
    ALT_TITLE,
    AMBIGUOUS,
    EXACT,
    NEAR_YEAR,
    NONE,
    NORMALISED,
    TitleMatch,
    match_titles,
    split_year,
    title_key,
    title_variants,
)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Postino, Il", "Il Postino"),
        ("Postino, Il", "Postino"),  # one leading article is dropped
        ("Alien 3", "Alien³"),  # NFKD
        ("Boy's Life 2", "Boys Life 2"),
        ("Oscar & Lucinda", "Oscar and Lucinda"),
        ("Double vie de Véronique, La", "Double Vie de Veronique"),
        ("Herbe, L'", "herbe"),
        ("What's Love Got to Do with It", "What's Love Got to Do with It?"),
    ],
)
def test_equal_keys(a: str, b: str) -> None:
    assert title_key(a) == title_key(b)


def test_different_keys() -> None:
    assert title_key("Alien") != title_key("Aliens")
    assert title_key("The Them") == "them"  # only one article goes


def test_variants() -> None:
    assert title_variants("Professional, The (a.k.a. Leon: The Professional)") == {
        "professional",
        "leontheprofessional",
        "leon",
    }
    assert title_variants("Star Wars: Episode IV - A New Hope") == {
        "starwarsepisodeivanewhope",
        "starwars",
        "newhope",
    }
    assert "sydney" in title_variants("Hard 8 (a.k.a. Sydney, a.k.a. Hard Eight)")


def test_split_year() -> None:
    assert split_year("Toy Story (1995)") == ("Toy Story", 1995)
    assert split_year("unkonwn (unkonwn)") is None
    assert split_year("Associate, The (L'Associe)(1982)") is None


CATALOGUE = {
    "1": "Toy Story (1995)",
    "58": "Postino, Il (The Postman) (1994)",
    "260": "Star Wars: Episode IV - A New Hope (1977)",
    "1130": "Howling, The (1980)",
    "1320": "Alien³ (1992)",
    "10": "Twin (1990)",
    "11": "Twin (1990)",  # duplicate titles: exact match is ambiguous
    "20": "Big Night (a.k.a. Night) (1996)",
    "21": "Night (1996)",
}


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Toy Story (1995)", TitleMatch(EXACT, "1")),
        ("Alien 3 (1992)", TitleMatch(NORMALISED, "1320")),
        ("Postino, Il (1994)", TitleMatch(ALT_TITLE, "58")),
        ("Star Wars (1977)", TitleMatch(ALT_TITLE, "260")),
        ("Howling, The (1981)", TitleMatch(NEAR_YEAR, "1130")),
        ("Twin (1990)", TitleMatch(AMBIGUOUS, None)),
        ("Night (1996)", TitleMatch(EXACT, "21")),  # stage 1 wins before stage 3 sees two
        ("The Night (1996)", TitleMatch(NORMALISED, "21")),
        ("Night: Part One (1996)", TitleMatch(AMBIGUOUS, None)),  # stage 3: 20 and 21
        ("Toy Story (1990)", TitleMatch(NONE, None)),  # the year is off by 5
        ("unkonwn (unkonwn)", TitleMatch(NONE, None)),
    ],
)
def test_stages(title: str, expected: TitleMatch) -> None:
    assert match_titles([title], CATALOGUE) == [expected]
