"""Console users, roles and login throttling, in the console's own SQLite
file (never the ledger, which the console only reads).

Passwords are argon2id hashes (argon2-cffi, its default parameters: memory
hard). A user with MAX_FAILS wrong passwords in a row is locked for
LOCK_S seconds (a right password during the lock is refused too), and every
wrong password costs FAIL_DELAY_S before the answer. The session cookie's
signing key is made once (secrets.token_hex) and kept in the same file, so
sessions survive a restart and a copied ledger does not carry it.
"""
import os
import re
import secrets
import sqlite3
import time

ROLES = ("viewer", "operator")
MAX_FAILS = 5
LOCK_S = 300
FAIL_DELAY_S = 0.5
NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")

_SQL = """
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL,
                                  fails INTEGER NOT NULL DEFAULT 0, locked_until REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class AuthError(ValueError):
    """A bad user name, role or password (one line)."""


def default_path(ledger):
    """Where the console keeps its users when --users is not given: beside a
    SQLite ledger (LEDGER.console.sqlite), or in the working directory."""
    if "://" in ledger:
        return "tally-console.sqlite"
    return ledger + ".console.sqlite"


class Users:
    def __init__(self, path):
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if path != ":memory:":
            try:
                os.chmod(path, 0o600)          # hashes and the session key: the owner's only
            except OSError:
                pass
        self.conn.executescript(_SQL)
        from argon2 import PasswordHasher
        self.ph = PasswordHasher()

    def secret(self):
        row = self.conn.execute("SELECT value FROM settings WHERE key='session_key'").fetchone()
        if row:
            return row[0]
        key = secrets.token_hex(32)
        self.conn.execute("INSERT OR IGNORE INTO settings VALUES ('session_key', ?)", (key,))
        return self.conn.execute("SELECT value FROM settings WHERE key='session_key'").fetchone()[0]

    def add(self, name, role, password):
        if not NAME.fullmatch(name or ""):
            raise AuthError("user name must be 1 to 64 letters, digits or . _ @ -")
        if role not in ROLES:
            raise AuthError("role must be one of %s" % ", ".join(ROLES))
        if len(password or "") < 8:
            raise AuthError("password must have at least 8 characters")
        h = self.ph.hash(password)
        self.conn.execute("INSERT INTO users(name, role, hash) VALUES (?,?,?) ON CONFLICT(name) DO UPDATE "
                          "SET role=excluded.role, hash=excluded.hash, fails=0, locked_until=0",
                          (name, role, h))

    def users(self):
        return self.conn.execute("SELECT name, role FROM users ORDER BY name").fetchall()

    def role(self, name):
        row = self.conn.execute("SELECT role FROM users WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def check(self, name, password, now=None):
        """(role, None) for a right password, else (None, why) with why one of
        "wrong" or "locked". Wrong passwords are counted per user name."""
        from argon2.exceptions import InvalidHashError, VerificationError
        now = time.time() if now is None else now
        row = self.conn.execute("SELECT role, hash, fails, locked_until FROM users WHERE name=?",
                                (name,)).fetchone()
        if row is None:
            self.ph.hash(password or "-")       # the same time as for a real user
            time.sleep(FAIL_DELAY_S)
            return None, "wrong"
        role, h, fails, until = row
        if until > now:
            time.sleep(FAIL_DELAY_S)
            return None, "locked"
        try:
            self.ph.verify(h, password or "")
        except (VerificationError, InvalidHashError):
            fails += 1
            lock = now + LOCK_S if fails >= MAX_FAILS else 0
            self.conn.execute("UPDATE users SET fails=?, locked_until=? WHERE name=?",
                              (0 if lock else fails, lock, name))
            time.sleep(FAIL_DELAY_S)
            return None, "locked" if lock else "wrong"
        if self.ph.check_needs_rehash(h):
            self.conn.execute("UPDATE users SET hash=? WHERE name=?", (self.ph.hash(password), name))
        self.conn.execute("UPDATE users SET fails=0 WHERE name=?", (name,))
        return role, None

    def close(self):
        self.conn.close()
