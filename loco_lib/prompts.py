"""Prompt data for LocoGen, LocoEdit, neuron editing, the human study and the robustness check.

The prompt sets live as plain YAML files in ``data/prompts/`` at the repository root (override the
folder with the environment variable ``LOCO_PROMPTS_DIR``). What each file holds and where it comes
from in the paper (Basu, Rezaei et al., ICML 2024):

* ``style.yaml``, ``objects.yaml``, ``facts.yaml`` - pairs (T, T') for LocoGen (Sec. 5.1.2) and
  LocoEdit (Sec. 6): an original prompt T with the attribute and a target prompt T' with the
  attribute removed ("style", "objects") or updated ("facts"). Targets follow App. C: 'a painting'
  for style; r2d2 -> robot, snoopy -> dog, nemo -> fish, cat -> dog for objects; 'The President of
  the United States' -> 'Joe Biden' and 'The British Monarch' -> 'Prince Charles' for facts. Each
  file also has ``edits:``, one LocoEdit block per concept: the prompts whose last-subject-token
  embeddings are remapped (for style the four variants of the authors'
  public code, see :func:`augment`).
* ``artists.yaml`` - App. K.1: the per-artist prompts used for neuron-level editing (Fig. 10), each
  with an artist-free counterpart.
* ``human_study.yaml`` - App. J: the 11 prompts rated by people, with their attribute.
* ``robustness.yaml`` - App. L: 80 MS-COCO classes x 4 locations = 320 generic prompts, stored as
  two lists and a template and expanded by :func:`load_robustness`.

A pair file is a mapping with ``attribute`` (style, objects or facts), ``description`` and either a
list ``pairs:`` of entries ``{original, target, subject, [target_subject], [concept], source}`` or
parallel lists ``originals:``, ``targets:``, ``subjects:`` (``subjects`` may be one string for all),
``[target_subjects:]``, ``[concepts:]`` and ``sources:`` (or one ``source:`` for the whole file,
which is also the default for entries without their own). ``subject`` is the words of the subject
as they occur in the original prompt (case-insensitive, whole words): LocoEdit and neuron editing
read the text encoder's output at its last token (:mod:`loco_lib.tokens`).

Every problem is a :class:`~loco_lib.errors.LocoError` whose one-line message names the file and the
entry (its index and original prompt).
"""
from __future__ import annotations

import json
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple

import yaml

from .errors import LocoError

ATTRIBUTES = ("style", "objects", "facts")
ENV_VAR = "LOCO_PROMPTS_DIR"
STUDY_ATTRIBUTES = ("style", "object", "fact")  # App. J writes the attribute in the singular
ROBUSTNESS_FIELDS = {"article", "object", "location"}


# --------------------------------------------------------------------------------------------------
# Data types


class PromptPair(NamedTuple):
    original: str
    target: str
    subject: str
    target_subject: str | None
    concept: str | None
    source: str


@dataclass
class PromptSet:
    """Parallel lists of prompt pairs (T_i, T'_i) with the subject of each original prompt."""

    attribute: str
    originals: list[str]
    targets: list[str]
    subjects: list[str]
    target_subjects: list[str | None]
    sources: list[str]
    concepts: list[str | None] = field(default_factory=list)
    path: Path | None = None

    def __post_init__(self):
        if not self.concepts:
            self.concepts = [None] * len(self.originals)
        lengths = {len(x) for x in (self.originals, self.targets, self.subjects, self.target_subjects, self.sources, self.concepts)}
        if len(lengths) != 1:
            raise LocoError(f"{self.path or 'PromptSet'}: the parallel lists have different lengths {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.originals)

    def __iter__(self) -> Iterator[PromptPair]:
        return (self.pair(i) for i in range(len(self)))

    def pair(self, i: int) -> PromptPair:
        return PromptPair(self.originals[i], self.targets[i], self.subjects[i], self.target_subjects[i], self.concepts[i], self.sources[i])

    def __getitem__(self, key):
        """An int gives one :class:`PromptPair`; a slice or a list of indices gives a PromptSet."""
        if isinstance(key, int) or hasattr(key, "__index__"):
            i = _check_index(key, len(self), self.path)
            return self.pair(i)
        return self.select(key)

    def select(self, indices) -> "PromptSet":
        """A PromptSet with the pairs at ``indices`` (a slice or a sequence of ints), in that order."""
        if isinstance(indices, slice):
            idx = list(range(len(self)))[indices]
        else:
            if isinstance(indices, (str, bytes)) or not hasattr(indices, "__iter__"):
                raise LocoError(f"select() takes a slice or a list of indices, not {indices!r}")
            idx = [_check_index(i, len(self), self.path) for i in indices]
        pick = lambda xs: [xs[i] for i in idx]
        return PromptSet(self.attribute, pick(self.originals), pick(self.targets), pick(self.subjects), pick(self.target_subjects),
                         pick(self.sources), pick(self.concepts), self.path)


@dataclass(frozen=True)
class StudyPrompt:
    """One prompt of the human study (App. J)."""

    prompt: str
    attribute: str  # style, object or fact, as the paper writes it
    subject: str
    source: str
    note: str | None = None


@dataclass(frozen=True)
class RobustnessGrid:
    """App. L: every class in every location, phrased by ``template``."""

    classes: tuple[str, ...]
    locations: tuple[str, ...]
    template: str
    articles: dict  # class -> the words before it where "a"/"an" is wrong (e.g. "a pair of skis")
    path: Path | None = None

    def article(self, obj: str) -> str:
        if obj in self.articles:
            return self.articles[obj]
        return "an" if obj[:1].lower() in "aeiou" else "a"

    def prompts(self) -> list[str]:
        out = []
        for obj in self.classes:
            for loc in self.locations:
                text = self.template.format(article=self.article(obj), object=obj, location=loc)
                out.append(" ".join(text.split()))  # an empty article leaves no double space
        return out


# --------------------------------------------------------------------------------------------------
# Files


def prompts_dir() -> Path:
    """The folder with the bundled prompt files: ``$LOCO_PROMPTS_DIR`` or ``<repository>/data/prompts``."""
    env = os.environ.get(ENV_VAR)
    folder = Path(env).expanduser() if env else Path(__file__).resolve().parent.parent / "data" / "prompts"
    if not folder.is_dir():
        hint = f" (set by {ENV_VAR})" if env else f" (set {ENV_VAR} to the folder with the prompt files)"
        raise LocoError(f"prompt folder {folder} does not exist{hint}")
    return folder


def _looks_like_path(x) -> bool:
    if isinstance(x, os.PathLike):
        return True
    return isinstance(x, str) and ("/" in x or os.sep in x or x.lower().endswith((".yaml", ".yml", ".json")))


def _resolve(attribute_or_path) -> Path:
    """A bundled attribute name ('style', 'objects', 'facts') or a path to a prompt file."""
    if _looks_like_path(attribute_or_path):
        return Path(attribute_or_path).expanduser()
    if isinstance(attribute_or_path, str) and attribute_or_path.strip().lower() in ATTRIBUTES:
        return prompts_dir() / f"{attribute_or_path.strip().lower()}.yaml"
    raise LocoError(f"unknown attribute {attribute_or_path!r}: choose one of {', '.join(ATTRIBUTES)} "
                    "or give the path of a .yaml/.json prompt file")


def _bundled(name: str, path) -> Path:
    return Path(path).expanduser() if path is not None else prompts_dir() / name


def _read(path: Path) -> dict:
    """Parse a YAML or JSON file into a mapping; every failure is a one-line LocoError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LocoError(f"prompt file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LocoError(f"cannot read prompt file {path}: {e.__class__.__name__}: {e}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LocoError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e)
            raise LocoError(f"{path}: invalid YAML{where}: {' '.join(str(problem).split())}") from None
    if not isinstance(data, dict):
        raise LocoError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


# --------------------------------------------------------------------------------------------------
# Validation helpers


def _short(text, n: int = 60) -> str:
    text = str(text)
    return repr(text if len(text) <= n else text[: n - 3] + "...")


def _check_index(i, n: int, path) -> int:
    try:
        i = i.__index__()
    except (AttributeError, TypeError):
        raise LocoError(f"{path or 'PromptSet'}: index {i!r} is not an integer") from None
    if not -n <= i < n:
        raise LocoError(f"{path or 'PromptSet'}: index {i} is out of range for {n} pairs")
    return i % n


def _contains(text: str, words: str) -> bool:
    """Whole-word, case-insensitive occurrence (the rule :func:`loco_lib.tokens.subject_token_index` uses)."""
    return re.search(r"(?<!\w)" + re.escape(words.strip()) + r"(?!\w)", text, flags=re.IGNORECASE) is not None


def _text(value, what: str, where: str, optional: bool = False) -> str | None:
    if value is None:
        if optional:
            return None
        raise LocoError(f"{where}: missing field {what!r}")
    if not isinstance(value, str):
        raise LocoError(f"{where}: {what!r} must be a string, found {type(value).__name__} {value!r}")
    if not value.strip():
        raise LocoError(f"{where}: empty {what!r} (it holds only whitespace or nothing)")
    return value


def _entry(raw: dict, i: int, where: str, default_source: str | None) -> PromptPair:
    """Validate one pair entry; ``where`` names the file and the list it sits in."""
    if not isinstance(raw, dict):
        raise LocoError(f"{where}[{i}]: expected a mapping with original/target/subject, found {type(raw).__name__} {_short(raw)}")
    orig = raw.get("original")
    label = f"{where}[{i}]" + (f" ({_short(orig)})" if isinstance(orig, str) and orig.strip() else "")
    known = {"original", "target", "subject", "target_subject", "concept", "source", "note"}
    extra = sorted(set(raw) - known)
    if extra:
        raise LocoError(f"{label}: unknown field(s) {', '.join(map(repr, extra))} (known: {', '.join(sorted(known))})")
    if "original" not in raw:
        raise LocoError(f"{label}: missing field 'original'")
    original = _text(orig, "original", label)
    target = _text(raw.get("target"), "target", label)
    subject = _text(raw.get("subject"), "subject", label)
    target_subject = _text(raw.get("target_subject"), "target_subject", label, optional=True)
    concept = _text(raw.get("concept"), "concept", label, optional=True)
    source = _text(raw.get("source", default_source), "source", label)
    return _pair_checks(PromptPair(original, target, subject, target_subject, concept, source), label)


def _pair_checks(p: PromptPair, label: str) -> PromptPair:
    if not _contains(p.original, p.subject):
        raise LocoError(f"{label}: subject {p.subject!r} does not occur (as whole words) in the original prompt {p.original!r}")
    if p.target_subject is not None and not _contains(p.target, p.target_subject):
        raise LocoError(f"{label}: target_subject {p.target_subject!r} does not occur (as whole words) in the target prompt {p.target!r}")
    if _contains(p.target, p.subject):
        raise LocoError(f"{label}: the target prompt {p.target!r} still contains the subject {p.subject!r} (T' must remove or update it)")
    return p


def _parallel(block: dict, where: str, default_source: str | None) -> list[PromptPair]:
    """The alternative schema: parallel lists originals/targets/subjects/... of one length."""
    lists = {}
    for key in ("originals", "targets", "subjects", "target_subjects", "concepts", "sources"):
        if key not in block:
            continue
        value = block[key]
        if key == "subjects" and isinstance(value, str):
            continue  # one subject for every prompt
        if not isinstance(value, list):
            raise LocoError(f"{where}: {key!r} must be a list, found {type(value).__name__}")
        lists[key] = value
    for key in ("originals", "targets", "subjects"):
        if key not in block:
            raise LocoError(f"{where}: missing field {key!r} (the parallel-list schema needs originals, targets and subjects)")
    n = len(lists["originals"])
    for key, value in lists.items():
        if len(value) != n:
            raise LocoError(f"{where}: {key!r} has {len(value)} entries but 'originals' has {n}: the lists must be parallel")
    if n == 0:
        raise LocoError(f"{where}: 'originals' is empty")
    out = []
    for i in range(n):
        raw = {"original": lists["originals"][i], "target": lists["targets"][i],
               "subject": block["subjects"] if isinstance(block["subjects"], str) else lists["subjects"][i]}
        for key, single in (("target_subjects", "target_subject"), ("concepts", "concept"), ("sources", "source")):
            if key in lists:
                raw[single] = lists[key][i]
        out.append(_entry(raw, i, f"{where} originals", default_source))
    return out


def _pairs_block(block, where: str, default_source: str | None, list_key: str = "pairs") -> list[PromptPair]:
    """A list of entries (under ``list_key``) or parallel lists, inside ``block``."""
    if not isinstance(block, dict):
        raise LocoError(f"{where}: expected a mapping, found {type(block).__name__}")
    default_source = block.get("source", default_source)
    if default_source is not None:
        _text(default_source, "source", where)
    if list_key in block:
        if "originals" in block:
            raise LocoError(f"{where}: give either {list_key!r} or the parallel lists 'originals'/'targets'/'subjects', not both")
        entries = block[list_key]
        if not isinstance(entries, list):
            raise LocoError(f"{where}: {list_key!r} must be a list of entries, found {type(entries).__name__}")
        if not entries:
            raise LocoError(f"{where}: {list_key!r} is empty")
        return [_entry(raw, i, f"{where} {list_key}", default_source) for i, raw in enumerate(entries)]
    if "originals" in block or "targets" in block or "subjects" in block:
        return _parallel(block, where, default_source)
    raise LocoError(f"{where}: missing field {list_key!r} (or the parallel lists 'originals', 'targets', 'subjects')")


def _to_set(attribute: str, pairs: list[PromptPair], path: Path) -> PromptSet:
    return PromptSet(attribute, [p.original for p in pairs], [p.target for p in pairs], [p.subject for p in pairs],
                     [p.target_subject for p in pairs], [p.source for p in pairs], [p.concept for p in pairs], path)


def _attribute(data: dict, path: Path) -> str:
    if "attribute" not in data:
        raise LocoError(f"{path}: missing field 'attribute' (one of {', '.join(ATTRIBUTES)})")
    attr = data["attribute"]
    if not isinstance(attr, str) or attr.strip().lower() not in ATTRIBUTES:
        raise LocoError(f"{path}: unknown attribute {attr!r} (choose one of {', '.join(ATTRIBUTES)})")
    return attr.strip().lower()


def _edits(data: dict, path: Path) -> dict[str, dict]:
    edits = data.get("edits", {})
    if edits is None:
        edits = {}
    if not isinstance(edits, dict):
        raise LocoError(f"{path}: 'edits' must be a mapping from concept name to an edit block, found {type(edits).__name__}")
    seen = {}
    for name in edits:
        if not isinstance(name, str) or not name.strip():
            raise LocoError(f"{path}: edits: concept names must be non-empty strings, found {name!r}")
        if name.strip().lower() in seen:
            raise LocoError(f"{path}: edits: concept {name!r} is given twice (names are case-insensitive)")
        seen[name.strip().lower()] = name
    return edits


class _PairFile(NamedTuple):
    path: Path
    attribute: str
    pairs: list[PromptPair]
    edits: dict[str, list[PromptPair]]


def _read_pair_file(attribute_or_path) -> _PairFile:
    """Read and validate a whole pair file (pairs and every edit block)."""
    path = _resolve(attribute_or_path)
    data = _read(path)
    attribute = _attribute(data, path)
    default_source = data.get("source")
    edits_raw = _edits(data, path)
    has_pairs = "pairs" in data or "originals" in data or "targets" in data or "subjects" in data
    if not has_pairs and not edits_raw:
        raise LocoError(f"{path}: missing field 'pairs' (or the parallel lists 'originals', 'targets', 'subjects')")
    pairs = _pairs_block(data, str(path), default_source) if has_pairs else []
    edits = {name: _pairs_block(block, f"{path} edits[{name!r}]", default_source, list_key="keys") for name, block in edits_raw.items()}
    return _PairFile(path, attribute, pairs, edits)


def _limit(pairs: list, limit, path) -> list:
    if limit is None:
        return pairs
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise LocoError(f"{path}: limit must be a positive integer or None, not {limit!r}")
    return pairs[:limit]


# --------------------------------------------------------------------------------------------------
# Public loaders


def load_pairs(attribute_or_path, limit: int | None = None, concept: str | None = None) -> PromptSet:
    """LocoGen/LocoEdit prompt pairs (T, T') of a bundled attribute or of a prompt file.

    ``attribute_or_path``: 'style', 'objects', 'facts', or the path of a YAML/JSON file with the same
    schema. ``concept`` keeps only pairs of that concept (e.g. 'van gogh'); ``limit`` keeps the first
    ``limit`` pairs (after the concept filter).
    """
    f = _read_pair_file(attribute_or_path)
    if not f.pairs:
        raise LocoError(f"{f.path}: has edit blocks but no 'pairs'")
    pairs = f.pairs
    if concept is not None:
        key = str(concept).strip().lower()
        pairs = [p for p in pairs if p.concept is not None and p.concept.strip().lower() == key]
        if not pairs:
            names = list(dict.fromkeys(p.concept for p in f.pairs if p.concept))
            raise LocoError(f"{f.path}: no pairs of concept {concept!r} (concepts: {', '.join(names) or 'none'})")
    return _to_set(f.attribute, _limit(pairs, limit, f.path), f.path)


def edit_concepts(attribute_or_path) -> list[str]:
    """Names of the concepts with a LocoEdit block in a pair file, in file order."""
    return list(_read_pair_file(attribute_or_path).edits)


def load_edit(attribute_or_path, concept: str) -> PromptSet:
    """The LocoEdit block of ``concept``: originals whose last-subject-token embeddings are remapped
    onto those of the targets (Sec. 6; keys and values as in :func:`augment`)."""
    f = _read_pair_file(attribute_or_path)
    key = str(concept).strip().lower()
    for name, pairs in f.edits.items():
        if name.strip().lower() == key:
            return _to_set(f.attribute, pairs, f.path)
    raise LocoError(f"{f.path}: no edit block for concept {concept!r} (concepts: {', '.join(f.edits) or 'none'})")


def concept_keys(attribute_or_path, concept: str) -> PromptSet:
    """The LocoEdit keys of ``concept``: its own edit block when the file has one, else the first
    block with its subject replaced by ``concept`` in every original (loco's choice, e.g. the
    organism's style file has keys for van gogh only; monet's are the same scenes in monet's style)."""
    f = _read_pair_file(attribute_or_path)
    key = str(concept).strip().lower()
    if not key:
        raise LocoError("empty concept")
    if key in (name.strip().lower() for name in f.edits):
        return load_edit(attribute_or_path, concept)
    if not f.edits:
        raise LocoError(f"{f.path}: no edit blocks to derive the keys of {concept!r} from")
    first = _to_set(f.attribute, next(iter(f.edits.values())), f.path)
    pairs = []
    for p in first:
        pattern = re.compile(r"(?<!\w)" + re.escape(p.subject) + r"(?!\w)", re.IGNORECASE)
        if pattern.search(p.original) is None:
            raise LocoError(f"{f.path}: subject {p.subject!r} does not occur in {p.original!r}")
        pairs.append(PromptPair(pattern.sub(concept, p.original, count=1), p.target, concept, p.target_subject, concept,
                                f"{p.source}; subject replaced by {concept!r}"))
    return _to_set(f.attribute, pairs, f.path)


def default_prompts(attribute: str, model: str | None = None):
    """The bundled prompt set of ``attribute`` for ``model``: the model card's own prompt folder (the
    organisms: ``data/prompts/toy/<attribute>.yaml``), the paper's sets otherwise."""
    from .registry import card

    key = str(attribute).strip().lower()
    if key not in ATTRIBUTES:
        raise LocoError(f"unknown attribute {attribute!r}: choose one of {', '.join(ATTRIBUTES)}")
    c = card(model)
    if c is not None and c.prompts_dir is not None:
        return c.prompts_dir / f"{key}.yaml"
    return key


def load_controls(attribute_or_path) -> dict[str, list[str]]:
    """The ``controls:`` block of a pair file: named groups of prompts an edit of the file's concept
    should leave alone (other styles, other objects, ...); empty if the file has none."""
    path = _resolve(attribute_or_path)
    data = _read(path)
    block = data.get("controls") or {}
    if not isinstance(block, dict):
        raise LocoError(f"{path}: 'controls' must map a group name to a list of prompts, found {type(block).__name__}")
    out = {}
    for name, prompts in block.items():
        if not isinstance(prompts, list) or not prompts:
            raise LocoError(f"{path}: controls[{name!r}] must be a non-empty list of prompts")
        out[str(name)] = [_text(p, f"controls[{name!r}][{i}]", str(path)) for i, p in enumerate(prompts)]
    return out


def _read_artists(path=None) -> tuple[Path, dict[str, list[PromptPair]]]:
    path = _bundled("artists.yaml", path)
    data = _read(path)
    if _attribute(data, path) != "style":
        raise LocoError(f"{path}: an artists file must have attribute 'style'")
    artists = data.get("artists")
    if not isinstance(artists, dict) or not artists:
        raise LocoError(f"{path}: missing field 'artists' (a mapping from artist name to a list of prompts)")
    out = {}
    for name, block in artists.items():
        _text(name, "artist name", f"{path} artists")
        block = {"pairs": block} if isinstance(block, list) else block
        pairs = _pairs_block(block, f"{path} artists[{name!r}]", data.get("source"), list_key="pairs")
        for i, p in enumerate(pairs):
            if p.subject.strip().lower() != name.strip().lower():
                raise LocoError(f"{path} artists[{name!r}] pairs[{i}] ({_short(p.original)}): subject {p.subject!r} is not the artist {name!r}")
        out[name] = [p._replace(concept=p.concept or name) for p in pairs]
    return path, out


def artist_names(path=None) -> list[str]:
    """The artists of App. K.1, in file order."""
    return list(_read_artists(path)[1])


def load_artists(artist: str | None = None, path=None, model: str | None = None) -> PromptSet:
    """App. K.1 prompts (with the artist) and their artist-free counterparts, as a PromptSet whose
    ``concepts`` are the artist names. ``artist`` (case-insensitive) keeps one artist's prompts.

    A model whose card brings its own artist prompts (the organisms: their world's scenes in one of
    their styles) gets those.
    """
    from .registry import card

    c = card(model)
    if c is not None and c.artist_prompts is not None and path is None:
        return c.artist_prompts(artist, model)
    path, artists = _read_artists(path)
    if artist is None:
        pairs = [p for ps in artists.values() for p in ps]
    else:
        match = [ps for name, ps in artists.items() if name.strip().lower() == str(artist).strip().lower()]
        if not match:
            raise LocoError(f"{path}: unknown artist {artist!r} (artists: {', '.join(artists)})")
        pairs = match[0]
    return _to_set("style", pairs, path)


def load_human_study(path=None) -> list[StudyPrompt]:
    """The 11 prompts of the human study (App. J), in the paper's order, duplicates included."""
    path = _bundled("human_study.yaml", path)
    data = _read(path)
    entries = data.get("prompts")
    if not isinstance(entries, list) or not entries:
        raise LocoError(f"{path}: missing field 'prompts' (a non-empty list)")
    out = []
    for i, raw in enumerate(entries):
        where = f"{path} prompts[{i}]"
        if not isinstance(raw, dict):
            raise LocoError(f"{where}: expected a mapping with prompt/attribute/subject/source, found {type(raw).__name__}")
        prompt = raw.get("prompt")
        label = where + (f" ({_short(prompt)})" if isinstance(prompt, str) and prompt.strip() else "")
        prompt = _text(prompt, "prompt", label)
        attr = _text(raw.get("attribute"), "attribute", label)
        if attr.strip().lower() not in STUDY_ATTRIBUTES:
            raise LocoError(f"{label}: unknown attribute {attr!r} (choose one of {', '.join(STUDY_ATTRIBUTES)})")
        subject = _text(raw.get("subject"), "subject", label)
        if not _contains(prompt, subject):
            raise LocoError(f"{label}: subject {subject!r} does not occur (as whole words) in the prompt {prompt!r}")
        source = _text(raw.get("source", data.get("source")), "source", label)
        note = _text(raw.get("note"), "note", label, optional=True)
        out.append(StudyPrompt(prompt, attr.strip().lower(), subject, source, note))
    return out


def robustness_grid(path=None) -> RobustnessGrid:
    """The App. L grid: MS-COCO classes, locations and the template that phrases them."""
    path = _bundled("robustness.yaml", path)
    data = _read(path)
    lists = {}
    for key in ("classes", "locations"):
        value = data.get(key)
        if not isinstance(value, list) or not value:
            raise LocoError(f"{path}: missing field {key!r} (a non-empty list of strings)")
        seen = set()
        for i, item in enumerate(value):
            _text(item, key[:-1] if key == "locations" else "class", f"{path} {key}[{i}]")
            if item.strip().lower() in seen:
                raise LocoError(f"{path} {key}[{i}] ({_short(item)}): duplicate entry")
            seen.add(item.strip().lower())
        lists[key] = tuple(v.strip() for v in value)
    template = _text(data.get("template"), "template", str(path))
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise LocoError(f"{path}: template {template!r} is malformed: {e}") from None
    if not {"object", "location"} <= names or not names <= ROBUSTNESS_FIELDS:
        raise LocoError(f"{path}: template {template!r} must use {{object}} and {{location}} (and may use {{article}}), found {sorted(names)}")
    articles = data.get("articles", {}) or {}
    if not isinstance(articles, dict):
        raise LocoError(f"{path}: 'articles' must be a mapping from class to the words before it")
    for obj, words in articles.items():
        if obj not in lists["classes"]:
            raise LocoError(f"{path}: articles[{obj!r}]: not one of the classes")
        if not isinstance(words, str):
            raise LocoError(f"{path}: articles[{obj!r}] must be a string, found {type(words).__name__}")
    grid = RobustnessGrid(lists["classes"], lists["locations"], template, dict(articles), path)
    prompts = grid.prompts()
    if len(set(prompts)) != len(prompts):
        raise LocoError(f"{path}: the template gives {len(prompts) - len(set(prompts))} duplicate prompts")
    return grid


def load_robustness(path=None) -> list[str]:
    """The App. L generic prompts: every MS-COCO class in every location (80 x 4 = 320)."""
    return robustness_grid(path).prompts()


def validate_all() -> dict[str, int]:
    """Load every bundled file; returns the number of prompts of each (raises LocoError on the first problem)."""
    counts = {}
    for attr in ATTRIBUTES:
        f = _read_pair_file(attr)
        counts[f"{attr}.yaml"] = len(f.pairs) + sum(len(v) for v in f.edits.values())
        toy = default_prompts(attr, "toy")
        f = _read_pair_file(toy)
        counts[f"toy/{attr}.yaml"] = len(f.pairs) + sum(len(v) for v in f.edits.values()) + sum(
            len(v) for v in load_controls(toy).values())
    counts["artists.yaml"] = len(load_artists())
    counts["human_study.yaml"] = len(load_human_study())
    counts["robustness.yaml"] = len(load_robustness())
    return counts


# -- LocoEdit's prompt variants (Sec. 6) ------------------------------------------------------------

# LocoEdit's prompt variants (:func:`augment`). Style and objects: the authors' key variants
# (design_keys and design_objects in loco_edit.py, github.com/samyadeepbasu/LocoGen); every style
# variant maps to one target prompt ('a painting'), as there. Objects and facts: the same templates
# with the target substituted, so each original row is mapped to the target's row in the same
# context. The paper gives no variants for facts and the authors' code none either: FACT_TEMPLATES
# is loco's choice.
STYLE_TEMPLATES = ("{}", "a painting in the style of {}", "a photo in the style of {}", "a picture in the style of {}")
OBJECT_TEMPLATES = ("{}", "an image of {}", "a photo of {}", "a picture of {}")
FACT_TEMPLATES = ("{}", "a photo of {}", "a portrait of {}", "an image of {}")
# The paper's targets (App. C).
PAPER_TARGETS = {
    "style": "a painting",
    "r2d2": "robot",
    "snoopy": "dog",
    "nemo": "fish",
    "cat": "dog",
    "the president of the united states": "joe biden",
    "the british monarch": "prince charles",
}
_ATTRIBUTES = {"style": "style", "styles": "style", "object": "objects", "objects": "objects", "fact": "facts", "facts": "facts"}


def augment(attribute: str, concept, target=None, templates=None):
    """Prompt variants for an edit: ``(originals, targets, subjects)`` lists of equal length.

    ``attribute``: 'style', 'objects' or 'facts'; ``concept``: the thing to edit ('van gogh',
    'r2d2', 'the president of the united states'), or a list of them; ``target``: what it should
    become (default: 'a painting' for style, the paper's App. C targets for its objects and facts).
    ``templates``: your own list of format strings with one ``{}`` (default: the module's
    ``STYLE_TEMPLATES`` / ``OBJECT_TEMPLATES`` / ``FACT_TEMPLATES`` above).

    Style follows the authors' code: every variant maps to the one target prompt (its last token).
    Objects and facts: the target is put into the same template. ``subjects`` is the concept for
    every original (its last token is the row); the targets' rows are their last tokens (pass
    ``target_subjects=None`` to :func:`loco_lib.locoedit.compute_edit`).
    """
    kind = _ATTRIBUTES.get(str(attribute).strip().lower())
    if kind is None:
        raise LocoError(f"unknown attribute {attribute!r}: use 'style', 'objects' or 'facts'")
    concepts = [concept] if isinstance(concept, str) else list(concept)
    if not concepts or any(not isinstance(c, str) or not c.strip() for c in concepts):
        raise LocoError("augment needs a non-empty concept (e.g. 'van gogh')")
    if templates is None:
        templates = {"style": STYLE_TEMPLATES, "objects": OBJECT_TEMPLATES, "facts": FACT_TEMPLATES}[kind]
    templates = [templates] if isinstance(templates, str) else list(templates)
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise LocoError(f"a template needs exactly one '{{}}' for the concept, got {t!r}")
    originals, targets, subjects = [], [], []
    for c in concepts:
        c = c.strip()
        tgt = target
        if tgt is None:
            tgt = PAPER_TARGETS["style"] if kind == "style" else PAPER_TARGETS.get(c.lower())
            if tgt is None:
                raise LocoError(f"no default target for {c!r}: give target=... (e.g. 'robot' for 'r2d2')")
        if not isinstance(tgt, str) or not tgt.strip():
            raise LocoError("the target must be a non-empty prompt")
        for t in templates:
            originals.append(t.format(c))
            targets.append(tgt if kind == "style" else t.format(tgt))
            subjects.append(c)
    return originals, targets, subjects
