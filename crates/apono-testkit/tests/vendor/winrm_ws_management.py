"""pywinrm (the WinRM client Ansible uses) against FakeWinrm: shell lifecycle, streams, stdin,
exit codes, faults, Basic authentication, and HTTPS verified against the fake's test CA."""
import base64
import json

from common import args, expect_raises, require

(winrm,) = require(("winrm", "pywinrm"))
from winrm.exceptions import InvalidCredentialsError, WinRMError, WinRMTransportError  # noqa: E402
from winrm.protocol import Protocol  # noqa: E402

a = args()
kwargs = {"transport": "basic", "username": a["user"], "password": a["password"]}
if a["endpoint"].startswith("https://"):
    kwargs["server_cert_validation"] = "validate"
    kwargs["ca_trust_path"] = a["ca"]
p = Protocol(a["endpoint"], **kwargs)

# Create, Command, Receive (stdout, exit code), Signal, Delete.
shell = p.open_shell()
cid = p.run_command(shell, "hostname")
out, err, rc = p.get_command_output(shell, cid)
assert (out, rc) == (a["hostname"].encode() + b"\r\n", 0), (out, err, rc)
p.cleanup_command(shell, cid)

cid = p.run_command(shell, "echo", ["hello", "world"])
out, err, rc = p.get_command_output(shell, cid)
assert (out, rc) == (b"hello world\r\n", 0), (out, err, rc)
p.cleanup_command(shell, cid)

# A command that does not exist: stderr and exit code 1, as cmd.exe answers.
cid = p.run_command(shell, "nosuchcommand")
out, err, rc = p.get_command_output(shell, cid)
assert rc == 1 and b"is not recognized" in err, (out, err, rc)
p.cleanup_command(shell, cid)

# A recognised PowerShell script, its payload sent on stdin (Send), output on stdout.
encoded = base64.b64encode(a["script"].encode("utf-16-le")).decode()
cid = p.run_command(shell, "powershell.exe", ["-NoProfile", "-EncodedCommand", encoded])
payload = base64.b64encode(json.dumps({"mode": "local"}).encode()).decode()
p.send_command_input(shell, cid, (payload + "\r\n").encode(), end=True)
out, err, rc = p.get_command_output(shell, cid)
assert rc == 0, (out, err, rc)
status = json.loads(out)
assert status["user"].endswith("\\" + a["user"]) and status["admin"] is True, status
p.cleanup_command(shell, cid)

# An unknown script fails with exit code 1.
cid = p.run_command(shell, "powershell -encodedcommand " + base64.b64encode("Get-Date".encode("utf-16-le")).decode())
out, err, rc = p.get_command_output(shell, cid)
assert rc == 1 and err, (out, err, rc)
p.cleanup_command(shell, cid)

p.close_shell(shell)
# The shell is gone: using it again is a WS-Management fault.
expect_raises((WinRMError, WinRMTransportError), lambda: p.run_command(shell, "hostname"), "deleted shell")

# Wrong password: 401.
bad = Protocol(a["endpoint"], **{**kwargs, "password": "wrong"})
expect_raises(InvalidCredentialsError, bad.open_shell, "bad password")

# The high-level Session API too.
s = winrm.Session(a["endpoint"], auth=(a["user"], a["password"]), **{k: v for k, v in kwargs.items() if k not in ("username", "password")})
r = s.run_cmd("echo", ["again"])
assert r.status_code == 0 and r.std_out == b"again\r\n", r.__dict__

print("ok")
