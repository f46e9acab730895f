"""The one way to read and create merchant-owned rows: everything goes through a Scope."""
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

T = TypeVar("T")

# Scope.get runs on almost every request: its statements are built once per model (building and
# cache-keying a SELECT costs more CPU than running it).
_get_statements: dict[tuple[type, bool], Select] = {}


def _get_statement(model: type, for_update: bool) -> Select:
    statement = _get_statements.get((model, for_update))
    if statement is None:
        statement = select(model).where(model.merchant_id == bindparam("scope_merchant_id"),
                                        model.livemode == bindparam("scope_livemode"),
                                        model.id == bindparam("row_id"))
        if for_update:
            statement = statement.with_for_update()
        _get_statements[(model, for_update)] = statement
    return statement


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
        params = {"scope_merchant_id": self.merchant_id, "scope_livemode": self.livemode, "row_id": row_id}
        return session.scalars(_get_statement(model, for_update), params).one_or_none()

    def new(self, model: type[T], **values) -> T:
        """A new model instance stamped with this scope's merchant and mode."""
        return model(merchant_id=self.merchant_id, livemode=self.livemode, **values)

    @property
    def mode(self) -> str:
        return "live" if self.livemode else "test"
