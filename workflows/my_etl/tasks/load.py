"""Load: the summary and the Rust task's scores, into the "warehouse" (the log)."""
import logging

from pydantic import BaseModel

import ork
from models import Scored, Transformed

log = logging.getLogger("load")


class Input(BaseModel):
    transform: Transformed
    score: Scored


class Loaded(BaseModel):
    rows: int
    active_users: int
    top_country: str
    total_spend: float


@ork.task
def main(input: Input) -> Loaded:
    if not input.transform.countries:
        raise ork.Fail("nothing to load: no country has active users")
    for row in input.score.shares:
        log.info("load %s share=%.3f", row.country, row.share)
    total = round(sum(c.spend for c in input.transform.countries), 2)
    return Loaded(
        rows=len(input.score.shares),
        active_users=input.transform.active_users,
        top_country=input.score.top_country,
        total_spend=total,
    )
