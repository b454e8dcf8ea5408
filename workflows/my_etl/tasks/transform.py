"""Transform: users with spend above `min_spend`, summed by country."""
import logging
from collections import defaultdict

from pydantic import BaseModel

import ork
from models import CountrySummary, Extracted, Transformed

log = logging.getLogger("transform")


class Input(BaseModel):
    extract: Extracted      # the output of the upstream task `extract`
    min_spend: float = 0.0  # a run param


@ork.task
def main(input: Input) -> Transformed:
    active = [u for u in input.extract.users if u.spend > input.min_spend]
    by_country = defaultdict(list)
    for u in active:
        by_country[u.country].append(u)
    countries = [
        CountrySummary(country=c, users=len(us), spend=round(sum(u.spend for u in us), 2))
        for c, us in sorted(by_country.items())
    ]
    log.info("%d active users in %d countries", len(active), len(countries))
    return Transformed(countries=countries, active_users=len(active))
