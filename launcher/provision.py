"""Roles, database and grants for Kassa, idempotent, run with an admin (superuser) URL.

- `kassa_owner` LOGIN CREATEDB: owns the database, the public schema and (through migrations) all tables.
- `kassa_app` LOGIN, not superuser, owns nothing: DML only, on what migrations grant it
  (plus SELECT on every new table of kassa_owner through default privileges).
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from launcher import LauncherError

OWNER, APP = "kassa_owner", "kassa_app"
# Reaching a local or LAN server takes milliseconds; this bounds a firewall that drops packets.
CONNECT_TIMEOUT = 10


def libpq_url(url: str) -> str:
    """postgresql+psycopg://... (SQLAlchemy style) -> postgresql://... (libpq style)."""
    scheme, rest = url.split("://", 1)
    if not scheme.startswith("postgres"):
        raise LauncherError(f"not a PostgreSQL URL: {scheme}://...")
    return "postgresql://" + rest


def sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def with_credentials(url: str, user: str, password: str, dbname: str) -> str:
    """The same server (host, port, query such as sslmode) with another user and database."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, "/" + dbname, parts.query, ""))


@dataclass(frozen=True)
class DatabaseUrls:
    """The three URLs handed to children, SQLAlchemy style (postgresql+psycopg://)."""

    app: str
    owner: str
    admin: str


def provision(admin_url: str, dbname: str, owner_password: str, app_password: str,
              recreate: bool = False) -> DatabaseUrls:
    """Create or update roles and database `dbname`; with `recreate`, drop the database first."""
    import psycopg
    from psycopg import sql

    admin_url = libpq_url(admin_url)
    db = sql.Identifier(dbname)
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            for role, password, attributes in (
                (OWNER, owner_password, "LOGIN CREATEDB"),
                (APP, app_password, "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"),
            ):
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
                # Attributes only on creation (changing some needs more than CREATEROLE); the
                # password every time, so that it follows the launcher's secrets.
                verb = "ALTER ROLE {} WITH LOGIN PASSWORD {}" if exists else f"CREATE ROLE {{}} WITH {attributes} PASSWORD {{}}"
                conn.execute(sql.SQL(verb).format(sql.Identifier(role), sql.Literal(password)))
            if conn.execute(f"SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = '{APP}'").fetchone()[0]:
                raise LauncherError(f"role {APP} is a superuser or bypasses row security; it must not")

            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            if exists and recreate:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(db))
            if not exists or recreate:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0")
                             .format(db, sql.Identifier(OWNER)))
            else:
                conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, sql.Identifier(OWNER)))
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, sql.Identifier(APP)))

        with psycopg.connect(with_database(admin_url, dbname), autocommit=True,
                             connect_timeout=CONNECT_TIMEOUT) as conn:
            # The owner creates tables (PostgreSQL < 15 gives the schema to the bootstrap superuser);
            # nobody else creates anything in public.
            conn.execute(f"ALTER SCHEMA public OWNER TO {OWNER}")
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            conn.execute(f"GRANT USAGE ON SCHEMA public TO {APP}")
            conn.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER} IN SCHEMA public GRANT SELECT ON TABLES TO {APP}")
    except psycopg.Error as exc:
        raise LauncherError(f"provisioning database {dbname!r} failed: {exc}") from None
    return DatabaseUrls(
        app=sqlalchemy_url(with_credentials(admin_url, APP, app_password, dbname)),
        owner=sqlalchemy_url(with_credentials(admin_url, OWNER, owner_password, dbname)),
        admin=sqlalchemy_url(admin_url),
    )


def with_database(admin_url: str, dbname: str) -> str:
    """The admin URL pointed at another database."""
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, ""))
