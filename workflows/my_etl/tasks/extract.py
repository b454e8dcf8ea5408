"""Extract: the users from a local fixture (stands in for an API or a database)."""
import json
import logging
from pathlib import Path

from pydantic import BaseModel

import ork
from models import Extracted

log = logging.getLogger("extract")


class Input(BaseModel):
    fixture: str = "data/users.json"  # a run param may name another file


@ork.task
def main(input: Input) -> Extracted:
    users = json.loads(Path(input.fixture).read_text())
    log.info("extracted %d users (run %s)", len(users), ork.context().run_id)
    return Extracted(users=users)
