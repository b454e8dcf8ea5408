"""The models the tasks share: each task's output is the next one's input."""
from typing import List

from pydantic import BaseModel


class User(BaseModel):
    id: int
    name: str
    email: str
    country: str
    spend: float


class Extracted(BaseModel):
    users: List[User]


class CountrySummary(BaseModel):
    country: str
    users: int
    spend: float


class Transformed(BaseModel):
    countries: List[CountrySummary]
    active_users: int


class Share(BaseModel):
    """A row of the Rust task's output (workflows/my_etl/rust_task/src/main.rs)."""
    country: str
    share: float
