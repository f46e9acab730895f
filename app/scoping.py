"""The one way to read and create merchant-owned rows: everything goes through a Scope."""
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

T = TypeVar("T")


@dataclass(frozen=True)
class Scope:
    """A merchant's book in one mode (test or live)."""

    merchant_id: str
    livemode: bool

    def select(self, model: type[T], *criteria) -> Select[tuple[T]]:
        """SELECT of model rows belonging to this merchant and mode, plus extra criteria."""
        return select(model).where(
            model.merchant_id == self.merchant_id, model.livemode == self.livemode, *criteria
        )

    def get(self, session: Session, model: type[T], row_id: str, *, for_update: bool = False) -> T | None:
        """One row by id, or None when it does not exist or belongs to another merchant or mode."""
        statement = self.select(model, model.id == row_id)
        if for_update:
            statement = statement.with_for_update()
        return session.scalars(statement).one_or_none()

    def new(self, model: type[T], **values) -> T:
        """A new model instance stamped with this scope's merchant and mode."""
        return model(merchant_id=self.merchant_id, livemode=self.livemode, **values)

    @property
    def mode(self) -> str:
        return "live" if self.livemode else "test"
