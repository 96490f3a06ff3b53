"""Does the challenger score live traffic as a sound model would? The two score checks of a step.

Why not simply the PSI of the challenger's score histogram against the champion's (what the judge
did until issue 13): a champion that has gone wrong is then the yardstick, and a retrained model
that is *better* fails for differing from it. In a demo run a retrained v2 (mean score 0.018,
about the fraud rate) was rolled back at shadow against a v1 that scored everything near 0
(PSI 1.1): exactly the situation a retrain is for.

What a bug that shifts a model's scores breaks, whatever the champion does, is calibration:
every model this platform registers is Platt-calibrated on its validation split
(``tasks.training.families.base``), so its mean score estimates the fraud rate of what it scores.
The rollout measures that rate on the newest curated, labelled transactions (``BaseRate``, with
its 95 % Wilson interval, in the rollout record) and holds the scores to it:

- **score_calibration**: the challenger's mean live score (exact, from the score histogram's
  ``_sum`` and ``_count``) must lie within ``max_calibration_ratio`` of the fraud rate's interval,
  beyond chance: the scores' sum is tested as a binomial count at the band's edge (one-sided, at
  the judge's ``alpha``), so a canary step's first handful of scores, all near 0 because none of
  those transactions was fraud, is no evidence of a collapse.
  The band is wide on purpose: the labelled sample and the live traffic need not share their
  hour-of-day and segment mix (the simulated world's fraud rate moves 3.7x between night and
  day), so only a gross shift fails it, which is what a scoring bug produces (a constant 0.6
  against a 2 % rate is 13x out).
- **score_shift_psi**: the PSI against the champion's histogram, reported but judged only when no
  fraud rate could be measured (no labelled curated data), where the champion as it is is the
  only yardstick. With a measured rate, calibration is the judge: two sound models score the
  same traffic differently, and the PSI between them says nothing about either. In the closed
  loop at CI scale a good retrain on drifted data (hold-out PR AUC 0.71 against the champion's
  0.60) had PSI 9.7 against a champion whose own mean score was within 1.5x of the fraud rate,
  and was rolled back at shadow; until then the PSI was judged whenever the champion looked
  calibrated.

The challenger's own hold-out scores would be the other sound yardstick, but they are not
recorded at registration, and rebuilding them takes the training set and the training package,
which the rollout does not import (``tests/code/test_layout.py``); the fraud rate is one small read.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tasks.rollout.scrape import Buckets, count, psi
from tasks.rollout.stats import Check, binomial_above, binomial_below, wilson

if TYPE_CHECKING:
    from config import RolloutJudge


@dataclass(frozen=True)
class BaseRate:
    """The observed fraud rate of the newest labelled transactions, with its 95 % interval."""

    rows: int
    positives: int
    low: float
    high: float

    @classmethod
    def of(cls, positives: int, rows: int) -> BaseRate:
        low, high = wilson(positives, rows)
        return cls(rows=rows, positives=positives, low=round(low, 6), high=round(high, 6))

    @property
    def rate(self) -> float:
        return self.positives / self.rows if self.rows else 0.0

    def band(self, ratio: float) -> tuple[float, float]:
        """Mean scores within ``ratio`` of the interval."""
        return self.low / ratio, min(1.0, self.high * ratio)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"rate": round(self.rate, 6)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> BaseRate | None:
        if not data:
            return None
        return cls(int(data["rows"]), int(data["positives"]), float(data["low"]), float(data["high"]))

    def describe(self) -> str:
        return f"fraud rate {self.rate:.4f} [{self.low:.4f}, {self.high:.4f}] of {self.rows} labelled rows"


def shift(champion: Buckets, challenger: Buckets) -> float | None:
    value = psi(champion, challenger)
    return None if value is None else round(value, 6)


def _calibration_p(mean: float, n: int, band: tuple[float, float]) -> float:
    """How likely scores summing to what these did are, from a model whose rate lies in ``band``.

    A calibrated model's scores sum to about the number of frauds among what it scored, so the
    sum is held to a binomial count at the band's nearer edge: five scores averaging 0.0016 sum to
    0.008, and five transactions at a 0.8 % edge hold no fraud 96 times in 100 (no evidence);
    900 scores averaging 0.001 sum to 0.9, and 900 transactions at a 0.6 % edge hold no fraud
    4 times in 1,000 (a collapse).
    """
    total = round(mean * n, 6)
    if mean < band[0]:
        return binomial_below(math.floor(total), n, band[0])
    if mean > band[1]:
        return binomial_above(math.ceil(total), n, band[1])
    return 1.0


def calibration_check(mean: float | None, n: int, base_rate: BaseRate | None, judge: RolloutJudge) -> Check:
    """The challenger's mean score against the observed fraud rate, beyond chance for ``n`` scores."""
    name = "score_calibration"
    if mean is None or base_rate is None or base_rate.rows == 0:
        why = (
            "no challenger scores" if mean is None else "no labelled curated data, the fraud rate is unknown"
        )
        return Check(name, True, mean, None, f"not judged: {why}", judged=False)
    lo, hi = base_rate.band(judge.max_calibration_ratio)
    p_value = _calibration_p(mean, n, (lo, hi))
    return Check(
        name,
        p_value >= judge.alpha,
        round(mean, 6),
        round(hi if mean > hi else lo, 6),
        f"challenger mean score {mean:.4f} over {n} scores, allowed [{lo:.4f}, {hi:.4f}] "
        f"({judge.max_calibration_ratio:g}x the {base_rate.describe()}); "
        f"p = {p_value:.3g} that a model in that band scores so (alpha {judge.alpha:g})",
        samples={"n": n, "labelled_rows": base_rate.rows, "positives": base_rate.positives},
    )


def shift_check(
    champion: Buckets, challenger: Buckets, base_rate: BaseRate | None, judge: RolloutJudge
) -> Check:
    """The challenger's score histogram against the champion's: judged only without a fraud rate."""
    name, value = "score_shift_psi", shift(champion, challenger)
    sizes = {"n": count(challenger), "champion_n": count(champion)}
    if value is None:
        return Check(name, True, None, judge.max_score_psi, "not judged: no scores on one side", False, sizes)
    if base_rate is not None and base_rate.rows:
        detail = (
            f"reported, not judged: PSI {value:.3f} against the champion's histogram; with the "
            f"{base_rate.describe()} measured, calibration against it is the judge (two sound models "
            "score the same traffic differently)"
        )
        return Check(name, True, value, judge.max_score_psi, detail, False, sizes)
    return Check(
        name,
        value <= judge.max_score_psi,
        value,
        judge.max_score_psi,
        "PSI of the challenger's score histogram against the champion's; the fraud rate is unknown "
        "(no labelled curated data), so the champion as it is is the only yardstick",
        samples=sizes,
    )
