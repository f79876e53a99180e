"""Local receivers of the connector's notifications, written independently of the connector
(Python's `hmac`, `http.server` and `aiosmtpd`), for tests/notifications.rs.

    notify_receiver.py serve CONFIG_JSON   runs the receivers until killed
    notify_receiver.py sign SECRET TS BODY prints Slack's signature of BODY at TS (v0=...)

`serve` takes {"dir", "webhook_key", "cert", "key", "smtp_user", "smtp_password",
"hold_event"} and prints one JSON line with the ports once every receiver listens. It appends
one JSON line per receipt to DIR/received.jsonl:

* POST /webhook: {"kind": "webhook", "id", "event", "signature_ok", "fresh", "body"}. The
  signature is recomputed here: hex HMAC-SHA256(key, f"{timestamp}.{body}") compared with
  `hmac.compare_digest`, and the timestamp must be within five minutes of now (the replay
  window of docs/notifications.md). The first delivery of `hold_event` is recorded, then its
  answer is held until GET /release, so that the test can kill the connector mid-delivery.
* POST /slack: {"kind": "slack", "body"} (an incoming-webhook message).
* POST /slack-response: {"kind": "slack-response", "body"} (a response_url replacement).
* SMTP with STARTTLS required and AUTH LOGIN/PLAIN checked against smtp_user/smtp_password:
  {"kind": "email", "tls", "auth_user", "mail_from", "rcpt_tos", "subject", "message_id",
  "text", "html"}.
"""
import email
import warnings
import email.policy
import hashlib
import hmac
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WINDOW = 300
# aiosmtpd 1.4 warns about its own use of a deprecated attribute once AUTH succeeds.
warnings.filterwarnings("ignore", message="Session.login_data")


def sign(secret, ts, body):
    mac = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256)
    return "v0=" + mac.hexdigest()


def serve(cfg):
    out_path = cfg["dir"] + "/received.jsonl"
    lock = threading.Lock()
    release = threading.Event()
    held = {"done": False}

    def record(entry):
        with lock:
            with open(out_path, "a") as f:
                f.write(json.dumps(entry) + "\n")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status=200):
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self):
            if self.path == "/release":
                release.set()
                self.answer()
            else:
                self.answer(404)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.path == "/webhook":
                ts = self.headers.get("Apono-Timestamp", "")
                given = self.headers.get("Apono-Signature", "")
                mac = hmac.new(cfg["webhook_key"].encode(), ts.encode() + b"." + body, hashlib.sha256)
                ok = hmac.compare_digest("v1=" + mac.hexdigest(), given)
                fresh = ts.isdigit() and abs(time.time() - int(ts)) <= WINDOW
                event = self.headers.get("Apono-Event")
                record({
                    "kind": "webhook",
                    "id": self.headers.get("Apono-Delivery-Id"),
                    "event": event,
                    "signature_ok": ok,
                    "fresh": fresh,
                    "body": json.loads(body),
                })
                if event == cfg.get("hold_event") and not held["done"]:
                    held["done"] = True
                    release.wait(120)
                    return  # the connection is gone with the killed connector
                self.answer(200 if ok and fresh else 401)
            elif self.path in ("/slack", "/slack-response"):
                record({"kind": self.path[1:], "body": json.loads(body)})
                self.answer()
            else:
                self.answer(404)

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, daemon=True).start()

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    class Mail:
        async def handle_DATA(self, server, session, envelope):
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            text = msg.get_body(preferencelist=("plain",))
            html = msg.get_body(preferencelist=("html",))
            record({
                "kind": "email",
                "tls": session.ssl is not None,
                "auth_user": session.auth_data.login.decode() if session.auth_data else None,
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "subject": str(msg["subject"]),
                "message_id": str(msg["message-id"]),
                "text": text.get_content() if text else None,
                "html": html.get_content() if html else None,
            })
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        good = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == cfg["smtp_user"]
            and auth_data.password.decode() == cfg["smtp_password"]
        )
        return AuthResult(success=good, auth_data=auth_data if good else None)

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cfg["cert"], cfg["key"])
    import socket
    with socket.socket() as probe:  # a free port: the controller's start-up check needs a real one
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    smtp = Controller(
        Mail(),
        hostname="127.0.0.1",
        port=smtp_port,
        tls_context=tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
        auth_required=True,
    )
    smtp.start()
    print(json.dumps({"http": http.server_address[1], "smtp": smtp_port}), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    if sys.argv[1] == "sign":
        print(sign(sys.argv[2], sys.argv[3], sys.argv[4]))
    else:
        serve(json.loads(sys.argv[2]))
