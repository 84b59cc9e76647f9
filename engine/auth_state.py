"""Sign-in state kept in the database, so it holds across server processes and restarts:

- failed sign-ins per username and per client address (throttling password guessing);
- a per-user epoch: every session and API token carries the epoch it was issued in, and
  signing out bumps it, so a copied session cookie or token stops working at once;
- revoked API tokens (by their id), until they would have expired anyway.

Keys of failed sign-ins are stored hashed: a password typed into the username field is
never written down.
"""
from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta, timezone

from sqlalchemy import Column, Index, Integer, String, Table, bindparam, delete, exists, insert, select, update

from .db import Database
from .models import Base, UTCDateTime

login_failures = Table(
    "login_failures", Base.metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(64), nullable=False),  # sha256 of "user:<name>" or "addr:<address>"
    Column("at", UTCDateTime(), nullable=False),
    Index("ix_login_failures_key_at", "key", "at"),
    Index("ix_login_failures_at", "at"),
)
auth_epochs = Table(
    "auth_epochs", Base.metadata,
    Column("username", String(80), primary_key=True),
    Column("epoch", Integer, nullable=False),
)
revoked_tokens = Table(
    "revoked_tokens", Base.metadata,
    Column("jti", String(64), primary_key=True),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
)

_EPOCH = select(auth_epochs.c.epoch).where(auth_epochs.c.username == bindparam("u"))
# a token's check, on every API call: the user's epoch and whether its id was revoked, one statement
_TOKEN_STATE = select(_EPOCH.scalar_subquery().label("epoch"), exists(
    select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == bindparam("j"))).label("revoked"))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode("utf-8", "surrogatepass")).hexdigest()


class AuthState:
    def __init__(self, db: Database, *, max_per_user: int = 5, max_per_address: int = 30, window: int = 900):
        self.db = db
        self.max_per_user = max_per_user
        self.max_per_address = max_per_address
        self.window = timedelta(seconds=window)

    # ------------------------------------------------------------ throttling
    def _keys(self, username: str, address: str | None) -> list[tuple[str, int]]:
        keys = [(_key("user", username.strip().lower()), self.max_per_user)]
        if address:
            keys.append((_key("addr", address), self.max_per_address))
        return keys

    def retry_after(self, username: str, address: str | None, now: datetime | None = None) -> int:
        """Seconds until this username and address may try again (0: now)."""
        now = now or _now()
        wait = 0.0
        with self.db.read() as session:
            for key, limit in self._keys(username, address):
                recent = session.scalars(
                    select(login_failures.c.at).where(login_failures.c.key == key,
                                                      login_failures.c.at > now - self.window)
                    .order_by(login_failures.c.at.desc()).limit(limit)).all()
                if len(recent) >= limit:  # blocked until the limit-th latest failure leaves the window
                    wait = max(wait, (recent[-1] + self.window - now).total_seconds())
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def failed(self, username: str, address: str | None, now: datetime | None = None) -> None:
        now = now or _now()
        with self.db.write() as session:
            session.execute(insert(login_failures), [{"key": key, "at": now}
                                                     for key, _limit in self._keys(username, address)])
            session.execute(delete(login_failures).where(login_failures.c.at <= now - self.window))

    def succeeded(self, username: str) -> None:
        """A correct password clears the username's failures (not the address's)."""
        key = _key("user", username.strip().lower())
        with self.db.write() as session:
            session.execute(delete(login_failures).where(login_failures.c.key == key))

    # ------------------------------------------------------------ epochs and revocation
    def epoch(self, username: str) -> int:
        with self.db.read() as session:
            return session.scalar(_EPOCH, {"u": username}) or 0

    def credentials_valid(self, username: str, epoch, jti: str | None = None) -> bool:
        """Whether a session or token of `username` issued in `epoch` (and with id `jti`) still holds."""
        if not isinstance(epoch, int):
            return False
        # a Core connection, no ORM session: this runs before every API call
        with self.db.engine.connect() as conn:
            if jti is None:
                return (conn.execute(_EPOCH, {"u": username}).scalar() or 0) == epoch
            found = conn.execute(_TOKEN_STATE, {"u": username, "j": jti}).one()
        return (found.epoch or 0) == epoch and not found.revoked

    def end_all(self, username: str) -> None:
        """Sign out everywhere: every session and token issued to `username` so far stops working."""
        with self.db.write() as session:
            done = session.execute(update(auth_epochs).where(auth_epochs.c.username == username)
                                   .values(epoch=auth_epochs.c.epoch + 1)).rowcount
            if not done:
                session.execute(insert(auth_epochs).values(username=username, epoch=1))

    def revoke_token(self, jti: str, expires_at: datetime) -> None:
        now = _now()
        with self.db.write() as session:
            if not session.scalar(select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == jti)):
                session.execute(insert(revoked_tokens).values(jti=jti, expires_at=expires_at))
            session.execute(delete(revoked_tokens).where(revoked_tokens.c.expires_at < now))
