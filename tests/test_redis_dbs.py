"""Every suite that opens a Redis database of its own takes it from testkit/redis_dbs.py, and no
two test files use one number: two vaultds with different root keys on one database make the
store guard refuse ("another root key"), and a suite that flushes its database would wipe
another's. Literal numbers (which some files still write) must match the table too."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from testkit.redis_dbs import RedisDb

REPO = Path(__file__).resolve().parent.parent
# A database picked by hand: `... + "/13"`, `... + f"/{IDENTITY_DB}"` with `IDENTITY_DB = 15`.
LITERAL = re.compile(r"""\+ f?"/(\d+)"|^\w*_DB = (\d+)""", re.MULTILINE)
BY_NAME = re.compile(r"RedisDb\.([A-Z_]+)")


def databases_by_file() -> dict[int, set[str]]:
    users: defaultdict[int, set[str]] = defaultdict(set)
    for path in [*(REPO / "tests").rglob("*.py"), *(REPO / "bench").rglob("*.py")]:
        if "node_modules" in path.parts or path.name == Path(__file__).name:
            continue
        text = path.read_text()
        where = str(path.relative_to(REPO))
        for match in LITERAL.finditer(text):
            users[int(match.group(1) or match.group(2))].add(where)
        for name in BY_NAME.findall(text):
            users[RedisDb[name]].add(where)
    return users


def test_every_database_a_suite_picks_is_in_the_table() -> None:
    unknown = {db: files for db, files in databases_by_file().items() if db not in set(RedisDb)}
    assert unknown == {}, "add these to testkit/redis_dbs.py's RedisDb"


def test_no_two_test_files_share_a_database_of_their_own() -> None:
    # SHARED is the session-wide database every suite may use.
    shared = {
        db: sorted(files)
        for db, files in databases_by_file().items()
        if db != RedisDb.SHARED and len(files) > 1
    }
    assert shared == {}


def test_every_database_in_the_table_is_used() -> None:
    unused = set(RedisDb) - {RedisDb.SHARED} - set(databases_by_file())
    assert unused == set(), "remove these from testkit/redis_dbs.py, or use them"
