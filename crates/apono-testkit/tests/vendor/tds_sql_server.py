"""python-tds (pytds, an independent pure-Python TDS client) against FakeSqlServer: PRELOGIN
without TLS, LOGIN7 (its password obfuscation), SQL batches, sp_executesql RPC with NVARCHAR
parameters, result sets of NVARCHAR and INT columns, ERROR tokens, and a refused login."""
from common import args, expect_raises, require

(pytds,) = require(("pytds", "python-tds"))

a = args()


def connect(user, password):
    return pytds.connect(
        server="127.0.0.1", port=a["port"], user=user, password=password,
        database="master", autocommit=True, login_timeout=5, timeout=5, cafile=None,
    )


conn = connect(a["user"], a["password"])
cur = conn.cursor()

# A batch without parameters: rows of one NVARCHAR column.
cur.execute("SELECT name FROM sys.databases "
            "WHERE name NOT IN (N'master', N'model', N'msdb', N'tempdb') AND state = 0 ORDER BY name")
assert [r[0] for r in cur.fetchall()] == a["databases"], cur.description

# DDL statements: done tokens, no rows.
cur.execute("IF NOT EXISTS (SELECT 1 FROM sys.server_principals WHERE name = N'apono_managed' "
            "AND type = 'R') CREATE SERVER ROLE [apono_managed]")
cur.execute("CREATE LOGIN [py]]tds] WITH PASSWORD = N'It''s-a-Pa55word', CHECK_EXPIRATION = OFF")
cur.execute("ALTER SERVER ROLE [apono_managed] ADD MEMBER [py]]tds]")

# sp_executesql with an NVARCHAR parameter: a row of two INT columns.
cur.execute(
    "SELECT CAST(COUNT(*) AS INT) AS found, CAST(COALESCE(SUM(CASE WHEN r.name = N'apono_managed' "
    "THEN 1 ELSE 0 END), 0) AS INT) AS marked FROM sys.server_principals AS p "
    "LEFT JOIN sys.server_role_members AS m ON m.member_principal_id = p.principal_id "
    "LEFT JOIN sys.server_principals AS r ON r.principal_id = m.role_principal_id "
    "WHERE p.name = %s AND p.type = 'S'",
    ("py]tds",),
)
assert cur.fetchall() == [(1, 1)], "LOGIN_STATE"
assert [d[0] for d in cur.description] == ["found", "marked"], cur.description

# An unknown statement: an ERROR token becomes the client's exception, the connection lives on.
err = expect_raises(pytds.ProgrammingError, lambda: cur.execute("SELEC 1"), "bad syntax")
assert "Incorrect syntax" in str(err), err
cur.execute("USE [master]")

# The new login logs in with its password (the obfuscation round-trips), and not with another.
connect("py]tds", "It's-a-Pa55word").close()
# pytds reports a refused login as OperationalError 18456, as SQL Server sends it.
err = expect_raises(pytds.OperationalError, lambda: connect("py]tds", "wrong"), "wrong password")
assert err.msg_no == 18456, err
cur.execute("ALTER LOGIN [py]]tds] DISABLE")
err = expect_raises(pytds.OperationalError, lambda: connect("py]tds", "It's-a-Pa55word"), "disabled")
assert err.msg_no == 18456, err
conn.close()
print("ok")
