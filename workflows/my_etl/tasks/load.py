"""Load: the summary and the Rust task's scores, into the "warehouse" (the log)."""
import logging
from typing import List

from pydantic import BaseModel

import ork
from models import Share, Transformed

log = logging.getLogger("load")


class Input(BaseModel):
    transform: Transformed  # by name: the output of `transform`
    shares: List[Share]     # mapped in etl.yaml's `inputs:` from score.shares
    top_country: str        # and from score.top_country


class Loaded(BaseModel):
    rows: int
    active_users: int
    top_country: str
    total_spend: float


@ork.task
def main(input: Input) -> Loaded:
    if not input.transform.countries:
        raise ork.Fail("nothing to load: no country has active users")
    for row in input.shares:
        log.info("load %s share=%.3f", row.country, row.share)
    total = round(sum(c.spend for c in input.transform.countries), 2)
    return Loaded(
        rows=len(input.shares),
        active_users=input.transform.active_users,
        top_country=input.top_country,
        total_spend=total,
    )
