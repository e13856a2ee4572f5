"""The human study (paper Sec. 5.2, App. J): rate image pairs 1-5 and compute the paper's figures.

App. J shows evaluators an image of the clean model (left) and one of the changed model (right) and
asks, per attribute, how much the attribute was removed, modified or updated, from 1 (not at all)
to 5 (completely). It reports the fraction of pairs rated above 1 (92.58 %, over 132 pairs and
five evaluators) and, per attribute, the fractions rated at least 2, 3, 4 and exactly 5.

* :func:`make_pairs` generates the pairs (before / after an edit, or the clean and a LocoGen-altered
  model: any two image lists);
* :class:`RatingLog` keeps ratings in a CSV (rewritten atomically after every rating, so nothing is
  lost when the notebook stops; reopening it resumes where the rater stopped);
* :func:`summary` computes App. J's figures from a log;
* :func:`viewer` is the ipywidgets rating page; :func:`static_grid` the figure a built book shows
  instead (widgets need a live kernel).

The questions are loco's paraphrase of App. J's three questions.
"""
from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LocoError
from .files import replaced

QUESTIONS = {
    "style": "How much of the style of {subject!r} is gone from the right image, compared with the left?",
    "object": "How much has the object {subject!r} been replaced in the right image, compared with the left?",
    "fact": "How much has the fact {subject!r} been updated in the right image, compared with the left?",
}
SCALE = "1 = not at all ... 5 = completely"
COLUMNS = ("pair", "prompt", "attribute", "subject", "seed", "rater", "rating", "time")


@dataclass
class Pair:
    """Two images of one prompt and seed: ``before`` (clean model) and ``after`` (changed model)."""

    id: str
    prompt: str
    attribute: str  # style, object or fact
    subject: str
    seed: int
    before: object = field(repr=False)
    after: object = field(repr=False)

    @property
    def question(self) -> str:
        return QUESTIONS[self.attribute].format(subject=self.subject)


def make_pairs(prompts, attributes, subjects, seeds, before, after) -> list[Pair]:
    """Pairs from parallel lists (one entry per image; ``before`` / ``after``: the images)."""
    n = len(prompts)
    lists = {"attributes": attributes, "subjects": subjects, "seeds": seeds, "before": before, "after": after}
    for what, xs in lists.items():
        if len(xs) != n:
            raise LocoError(f"{len(xs)} {what} for {n} prompts")
    bad = [a for a in attributes if a not in QUESTIONS]
    if bad:
        raise LocoError(f"unknown attribute {bad[0]!r}: the study asks about {', '.join(QUESTIONS)}")
    return [Pair(f"{i:03d}", p, a, s, int(sd), b, af)
            for i, (p, a, s, sd, b, af) in enumerate(zip(prompts, attributes, subjects, seeds, before, after))]


class RatingLog:
    """Ratings of pairs by raters, in a CSV at ``path`` (columns :data:`COLUMNS`)."""

    def __init__(self, path):
        self.path = Path(path)
        self.rows: list[dict] = []
        if self.path.exists():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                if tuple(reader.fieldnames or ()) != COLUMNS:
                    raise LocoError(f"{self.path} is not a rating log (columns {', '.join(COLUMNS)})")
                self.rows = list(reader)

    def rate(self, pair: Pair, rating: int, rater: str = "anonymous") -> None:
        """Record ``rating`` (1-5) of ``pair`` by ``rater`` (a new rating replaces the rater's old one)."""
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise LocoError(f"a rating is a whole number from 1 to 5, not {rating!r}")
        if not str(rater).strip():
            raise LocoError("give the rater a name")
        self.rows = [r for r in self.rows if not (r["pair"] == pair.id and r["rater"] == rater)]
        self.rows.append({"pair": pair.id, "prompt": pair.prompt, "attribute": pair.attribute, "subject": pair.subject,
                          "seed": pair.seed, "rater": rater, "rating": rating, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        self._write()

    def rated(self, rater: str) -> set:
        return {r["pair"] for r in self.rows if r["rater"] == rater}

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with replaced(self.path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(self.rows)

    def frame(self):
        import pandas as pd

        df = pd.DataFrame(self.rows, columns=list(COLUMNS))
        df["rating"] = pd.to_numeric(df["rating"])
        return df


def summary(ratings):
    """App. J's figures from a :class:`RatingLog`, a CSV path or a DataFrame: per attribute and
    overall, the number of ratings and the fractions rated above 1, at least 2, 3, 4, and 5."""
    import pandas as pd

    if isinstance(ratings, (str, os.PathLike)):
        ratings = RatingLog(ratings)
    df = ratings.frame() if isinstance(ratings, RatingLog) else pd.DataFrame(ratings)
    if df.empty:
        raise LocoError("no ratings yet")
    bad = df[~df["rating"].isin([1, 2, 3, 4, 5])]
    if len(bad):
        raise LocoError(f"rating {bad['rating'].iloc[0]!r} is not 1-5")

    def row(d):
        r = d["rating"]
        return {"ratings": len(r), "above 1": float((r > 1).mean()), ">= 3": float((r >= 3).mean()),
                ">= 4": float((r >= 4).mean()), "= 5": float((r == 5).mean())}

    out = {a: row(d) for a, d in df.groupby("attribute", sort=False)}
    out["all"] = row(df)
    return pd.DataFrame(out).T.rename_axis("attribute")


def static_grid(pairs: list[Pair], ncols: int | None = None, size: float = 2.0):
    """The pairs as a figure: clean model's images above, changed model's below."""
    import textwrap

    from .plots import image_grid

    if not pairs:
        raise LocoError("no pairs to show")
    n = len(pairs)
    return image_grid([p.before for p in pairs] + [p.after for p in pairs],
                      titles=[textwrap.fill(p.prompt, 22) for p in pairs] + [""] * n,
                      row_labels=["before (left)", "after (right)"], ncols=ncols or n, size=size)


def viewer(pairs: list[Pair], log, rater: str = "anonymous", size: int = 256):
    """An ipywidgets page: each pair side by side with its question and five rating buttons; every
    click is written to ``log`` (a :class:`RatingLog` or a CSV path) and the next unrated pair shown."""
    import io

    try:
        import ipywidgets as W
    except ImportError:  # pragma: no cover - ipywidgets is a pinned dependency
        raise LocoError("the rating viewer needs ipywidgets (pip install ipywidgets)") from None
    import numpy as np
    from PIL import Image

    if not pairs:
        raise LocoError("no pairs to rate")
    log = log if isinstance(log, RatingLog) else RatingLog(log)

    def png(im):
        arr = np.asarray(im)
        pil = Image.fromarray(arr) if not isinstance(im, Image.Image) else im
        buf = io.BytesIO()
        pil.resize((size, size), Image.NEAREST).save(buf, format="PNG")
        return buf.getvalue()

    left, right = W.Image(format="png"), W.Image(format="png")
    title, question, status = W.HTML(), W.HTML(), W.Label()
    buttons = [W.Button(description=str(k), layout=W.Layout(width="48px")) for k in range(1, 6)]
    state = {"i": 0}

    def todo():
        done = log.rated(rater)
        return [k for k, p in enumerate(pairs) if p.id not in done]

    def show():
        left_over = todo()
        status.value = f"{len(pairs) - len(left_over)} of {len(pairs)} rated by {rater}; log: {log.path}"
        if not left_over:
            question.value, title.value = "<b>All pairs rated.</b>", ""
            for b in buttons:
                b.disabled = True
            return
        state["i"] = left_over[0]
        p = pairs[state["i"]]
        left.value, right.value = png(p.before), png(p.after)
        title.value = f"<b>{p.prompt}</b> (seed {p.seed})"
        question.value = f"{p.question}<br><small>{SCALE}</small>"

    def click(b):
        log.rate(pairs[state["i"]], int(b.description), rater)
        show()

    for b in buttons:
        b.on_click(click)
    show()
    return W.VBox([title, W.HBox([left, right]), question, W.HBox(buttons), status])
